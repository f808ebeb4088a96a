"""``craft train SPEC -o OUT.safetensors``: train a model on data sampled from a spec.

Writes the final model to OUT (atomically), a JSONL log (``--log``, default
``OUT.log.jsonl``: one record per evaluation with step, loss, lr, per-rule excess loss
and wall time) and a loss-curve PNG (``--plot``, default ``OUT.loss.png``; ``--plot
none`` to skip). With ``--save-every N`` checkpoints ``step_000000.safetensors``,
``step_00000N.safetensors``, ... go to the run folder beside the output: the output
path without its suffix plus ``_run/`` (``out/toy.safetensors`` -> ``out/toy_run/``).
A progress bar on stderr shows the loss and the worst rule's excess loss; ``--json``
prints one summary object on stdout.

``craft/cli.py`` wires it in with ``add_parser(subparsers)`` and dispatches to ``run``.

Example:
    $ craft train specs/library/toy_language.yaml --family tensor --steps 5000 \
        -o out/toy_tensor.safetensors --save-every 500
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from craft.argtypes import int_at_least, positive_float
from craft.output import print_json
from craft.paths import PathArg, refuse_overwrites
from craft.train.config import TrainConfig
from craft.train.loop import resolve_device, run_dir_for, train
from craft.train.plot import plot_records, rule_groups
from specs.errors import CraftError
from specs.load import load_spec


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``train`` on the ``craft`` subparsers; returns the new parser."""
    d = TrainConfig()
    p = subparsers.add_parser(
        "train",
        help="train a model on data sampled from a spec",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("spec", metavar="SPEC", help="spec file (YAML or JSON)")
    p.add_argument("-o", "--output", required=True, help="model file to write (.safetensors)")
    p.add_argument(
        "--family", choices=("standard", "tensor"), default="standard", help="model family"
    )
    p.add_argument("--layers", type=int_at_least(1), default=d.n_layers, help="layers")
    p.add_argument("--heads", type=int_at_least(1), default=d.n_heads, help="heads a layer")
    p.add_argument("--d-model", type=int_at_least(1), default=d.d_model, help="residual width")
    p.add_argument("--d-head", type=int_at_least(1), help="default d_model / heads")
    p.add_argument("--d-mlp", type=int_at_least(0), default=d.d_mlp, help="0: attention-only")
    p.add_argument(
        "--positions",
        choices=("learned", "rotary", "none"),
        help="none: no positional embedding (the model must derive position); "
        "default: rotary for the tensor family, learned for the standard one",
    )
    p.add_argument("--steps", type=int_at_least(1), default=d.steps, help="optimizer steps")
    p.add_argument("--batch", type=int_at_least(1), default=d.batch, help="sequences a step")
    p.add_argument("--length", type=int_at_least(1), help="tokens a sequence (128 or max_len)")
    p.add_argument("--lr", type=positive_float, default=d.lr, help="peak learning rate")
    p.add_argument("--warmup", type=int_at_least(0), help="warm-up steps (5%% of steps)")
    p.add_argument("--seed", type=int_at_least(0), default=d.seed, help="data and init seed")
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default=d.device, help="auto: cuda if any"
    )
    p.add_argument(
        "--eval-every", type=int_at_least(1), help="steps between log records (max(10, steps/50))"
    )
    p.add_argument(
        "--eval-batch", type=int_at_least(1), default=d.eval_batch, help="sequences an evaluation"
    )
    p.add_argument(
        "--save-every",
        type=int_at_least(0),
        default=0,
        help="checkpoint every N steps into OUT_run/ (0: none)",
    )
    p.add_argument(
        "--qk-control",
        choices=("clamp", "penalty", "none"),
        default=d.qk_control,
        help="tensor family: bound the bilinear Q/K weight norms",
    )
    p.add_argument(
        "--qk-init", type=positive_float, default=d.qk_init, help="tensor family: Q/K init scale"
    )
    p.add_argument("--qk-max-norm", type=positive_float, help="per-head clamp bound")
    p.add_argument("--qk-penalty", type=positive_float, default=d.qk_penalty, help="penalty weight")
    p.add_argument("--log", help="JSONL log (default OUT.log.jsonl)")
    p.add_argument("--plot", help="loss-curve PNG (default OUT.loss.png; 'none' to skip)")
    p.add_argument(
        "--threads",
        type=int_at_least(1),
        help="torch CPU threads (default on the CPU: 1, the fastest for models this small)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print one JSON summary object")
    p.set_defaults(run=run)
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the arguments describe (validated)."""
    return TrainConfig(
        family=args.family,
        n_layers=args.layers,
        n_heads=args.heads,
        d_model=args.d_model,
        d_head=args.d_head,
        d_mlp=args.d_mlp,
        positions=args.positions,
        steps=args.steps,
        batch=args.batch,
        length=args.length,
        lr=args.lr,
        warmup=args.warmup,
        seed=args.seed,
        device=args.device,
        eval_every=args.eval_every,
        eval_batch=args.eval_batch,
        save_every=args.save_every,
        qk_init=args.qk_init,
        qk_control=args.qk_control,
        qk_max_norm=args.qk_max_norm,
        qk_penalty=args.qk_penalty,
    )


def _paths(args: argparse.Namespace) -> tuple[Path, Path, Path | None]:
    output = Path(args.output)
    if output.suffix != ".safetensors":
        raise CraftError(
            f"output {output} does not end in .safetensors",
            where="craft train",
            fix="pass -o NAME.safetensors",
        )
    log = Path(args.log) if args.log else output.with_suffix(".log.jsonl")
    if args.plot and args.plot.lower() == "none":
        plot = None
    else:
        plot = Path(args.plot) if args.plot else output.with_suffix(".loss.png")
    return output, log, plot


def _refuse_overwrites(
    args: argparse.Namespace, output: Path, log: Path, plot: Path | None
) -> None:
    """No output (model, log, plot, checkpoint folder) is the spec or another output."""
    outputs = [PathArg("-o", output, "the model"), PathArg("--log", log, "the log")]
    if plot is not None:
        outputs.append(PathArg("--plot", plot, "the plot"))
    if args.save_every:
        outputs.append(PathArg("--save-every", run_dir_for(output), "the checkpoints"))
    refuse_overwrites([PathArg("SPEC", args.spec)], outputs)


def run(args: argparse.Namespace) -> int:
    """Run ``craft train``; returns the exit code (0). User errors raise CraftError."""
    output, log, plot = _paths(args)
    _refuse_overwrites(args, output, log, plot)
    cfg = config_from_args(args)
    spec = load_spec(args.spec)
    threads = getattr(args, "threads", None)
    if threads is None and resolve_device(cfg.device).type == "cpu":
        threads = 1  # tiny models: the thread pool costs more than it gives
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        return _run(args, cfg, spec, output, log, plot)
    finally:
        torch.set_num_threads(before)


def _run(args, cfg, spec, output: Path, log: Path, plot: Path | None) -> int:
    progress = None if args.no_progress else _Progress(cfg.steps)
    try:
        result = train(
            spec,
            cfg,
            output=output,
            log_path=log,
            on_record=progress.record if progress else None,
            on_step=progress.step if progress else None,
        )
    finally:
        if progress is not None:
            progress.stop()
    if plot is not None:
        try:
            title = f"{spec.name}: {cfg.family} family"
            plot_records(result.records, plot, title, rule_groups(spec))
        except KeyboardInterrupt:
            kept = f"wrote the model {output} and the log {log}; not the plot"
            raise KeyboardInterrupt(kept) from None
    excess = result.final_excess
    rules = {k: v for k, v in excess.items() if k != "overall"}
    summary = {
        "format": "craft-train/1",
        "model": str(output),
        "spec": {"name": spec.name, "sha256": spec.sha256},
        "family": cfg.family,
        "steps": result.config.steps,
        "wall_s": round(result.wall_s, 2),
        "s_per_step": round(result.wall_s / result.config.steps, 4),
        "device": result.device,
        "params": result.model.n_params(),
        "kl": {"rules": rules, "overall": excess.get("overall")},  # final excess loss
        "log": str(log),
        "plot": str(plot) if plot else None,
        "run_dir": str(run_dir_for(output)) if cfg.save_every else None,
        "checkpoints": [str(p) for p in result.checkpoints],
    }
    if args.json:
        print_json(summary)
        return 0
    print(
        f"trained {cfg.family} model on {spec.name}: {summary['steps']} steps in "
        f"{summary['wall_s']} s on {result.device} -> {output}"
    )
    print(f"  overall excess loss {excess.get('overall', float('nan')):.4f} nats")
    for name, value in sorted(rules.items(), key=lambda kv: -kv[1]):
        print(f"  {name:>20}  {value:.4f}")
    if cfg.save_every:
        print(f"  {len(result.checkpoints)} checkpoints in {summary['run_dir']}")
    print(f"  log {log}" + (f", plot {plot}" if plot else ""))
    return 0


class _Progress:
    """A rich progress bar on stderr: loss and the worst rule's excess loss."""

    def __init__(self, steps: int):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}", markup=False),
            TextColumn("{task.fields[worst]}", markup=False),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr, markup=False, highlight=False),
        )
        self.task = self.bar.add_task("train", total=steps, loss="-", worst="")
        self.bar.start()

    def step(self, step: int, loss: float) -> None:
        self.bar.update(self.task, completed=step, loss=f"{loss:.4f}")

    def record(self, rec: dict) -> None:
        rules = {k: v for k, v in rec["excess"].items() if k != "overall"}
        if rules:
            worst = max(rules, key=rules.get)
            self.bar.update(self.task, worst=f"worst {worst} {rules[worst]:.3f}")

    def stop(self) -> None:
        self.bar.stop()
