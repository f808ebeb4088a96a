"""The training loop: fresh batches from the spec, AdamW, clipping, logs, checkpoints.

Deterministic for a seed: the init draws from ``seed``; the batch of step ``n`` is
``specs.sample`` with a seed derived from ``(seed, n)`` (so a run can be resumed or
compared step by step), and the fixed evaluation set from ``(seed, "eval")``. On the
CPU two runs with the same config give identical weights.

Every ``eval_every`` steps (and at steps 0 and ``steps``) one JSON object is appended
to the log: ``{"step", "loss", "lr", "excess": {rule: nats}, "worst_rule", "wall_s"}``;
``loss`` is the mean training cross-entropy since the previous record (null at step 0).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from craft.models import ModelConfig, Transformer, save_model
from craft.train.config import TrainConfig
from craft.train.init import clamp_qk, init_weights, qk_penalty
from craft.train.metrics import EvalSet, excess_by_rule, make_eval_set
from craft.train.schedule import check_schedule, lr_at
from specs.errors import CraftError
from specs.model import Spec
from specs.sample import sample

EVAL_TAG = 1  # SeedSequence entropy tags: (seed, 0, step) for batches, (seed, 1) for eval


def step_seed(seed: int, step: int) -> int:
    """The sampling seed of training step ``step`` (a 32-bit integer)."""
    return int(np.random.SeedSequence([seed, 0, step]).generate_state(1)[0])


def eval_seed(seed: int) -> int:
    """The sampling seed of the fixed evaluation set."""
    return int(np.random.SeedSequence([seed, EVAL_TAG]).generate_state(1)[0])


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu.

    Raises:
        CraftError: ``cuda`` asked for on a machine without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CraftError("--device cuda, but torch sees no CUDA device", fix="use --device cpu")
    return torch.device(name)


def model_config(cfg: TrainConfig, spec: Spec) -> ModelConfig:
    """The model shape of a resolved TrainConfig for this spec (BOS id = vocab size)."""
    vocab = len(spec.vocab)
    return ModelConfig(
        family=cfg.family,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        d_model=cfg.d_model,
        d_head=cfg.resolved_d_head,
        d_mlp=cfg.d_mlp,
        n_vocab=vocab + 1,
        n_out=vocab,
        n_ctx=spec.max_len + 1,
        positions=cfg.positions or "learned",
        bias=cfg.family == "standard",
    )


def run_dir_for(output: str | Path) -> Path:
    """Checkpoint folder of an output file: ``out/toy.safetensors`` -> ``out/toy_run/``."""
    output = Path(output)
    return output.with_name(output.stem + "_run")


@dataclass
class TrainResult:
    """What a run produced.

    Attributes:
        model: the trained model (on the CPU, in eval mode, ``meta`` filled).
        config: the resolved config.
        records: the log records, in order.
        checkpoints: checkpoint files written.
        wall_s: seconds spent, evaluation included.
        device: where it ran.
    """

    model: Transformer
    config: TrainConfig
    records: list[dict] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    wall_s: float = 0.0
    device: str = "cpu"

    @property
    def final_excess(self) -> dict[str, float]:
        return self.records[-1]["excess"] if self.records else {}


def _meta(cfg: TrainConfig, spec: Spec, step: int, excess: dict, dev: str) -> dict:
    training = {
        **cfg.to_json(),
        "steps_done": step,
        "final_excess": excess,
        "device_used": dev,
    }  # run facts (wall time) go to the log: one seed, one device, the same bytes
    return {"training": training, "spec": spec.provenance()}


def _save(model: Transformer, path: Path, meta: dict) -> None:
    model.meta = meta
    save_model(model, path)


def train(
    spec: Spec,
    config: TrainConfig,
    *,
    output: str | Path | None = None,
    log_path: str | Path | None = None,
    on_record: Callable[[dict], None] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train a fresh model on data sampled from ``spec``.

    Args:
        spec: the spec giving the data and the ground truth.
        config: the training config (resolved here against the spec).
        output: final model file (written atomically); checkpoints, when
            ``save_every > 0``, go to :func:`run_dir_for` of it (``output`` required then).
        log_path: JSONL log, rewritten from the start.
        on_record: called with each log record (progress display).
        on_step: called with ``(step, loss)`` after every step.

    Returns:
        The :class:`TrainResult`.

    Raises:
        CraftError: a bad config, ``save_every`` without an output, or a loss that
            became NaN or infinite.
    """
    cfg = config.resolve(spec)
    check_schedule(cfg.steps, cfg.warmup, cfg.min_lr_ratio)
    if cfg.save_every and output is None:
        raise CraftError("save_every needs an output path", fix="pass -o OUT.safetensors")
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = Transformer(model_config(cfg, spec))
    init_weights(model, cfg.seed, cfg.qk_init)
    model.to(device).train()
    tensor = cfg.family == "tensor"
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay
    )
    data: EvalSet = make_eval_set(spec, cfg.eval_batch, cfg.length, eval_seed(cfg.seed)).to(device)
    run_dir = run_dir_for(output) if cfg.save_every else None
    result = TrainResult(model, cfg, device=str(device))
    log = _open_log(log_path)
    start = time.perf_counter()
    since: list[float] = []

    def record(step: int) -> None:
        excess = excess_by_rule(model, data)
        rules = {k: v for k, v in excess.items() if k != "overall"}
        rec = {
            "step": step,
            "loss": float(np.mean(since)) if since else None,
            "lr": lr_at(min(step, cfg.steps - 1), cfg.lr, cfg.steps, cfg.warmup, cfg.min_lr_ratio),
            "excess": excess,
            "worst_rule": max(rules, key=rules.get) if rules else None,
            "wall_s": round(time.perf_counter() - start, 3),
        }
        since.clear()
        result.records.append(rec)
        if log is not None:
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if on_record is not None:
            on_record(rec)

    def checkpoint(step: int) -> None:
        if run_dir is None or step % cfg.save_every:
            return
        path = run_dir / f"step_{step:06d}.safetensors"
        _save(model, path, _meta(cfg, spec, step, result.final_excess, str(device)))
        result.checkpoints.append(path)

    def batch(step: int) -> np.ndarray:
        return sample(spec, cfg.batch, cfg.length, step_seed(cfg.seed, step))[0]

    done = 0
    try:
        record(0)
        checkpoint(0)
        with ThreadPoolExecutor(max_workers=1) as pool:  # sample step n+1 while n trains
            pending = pool.submit(batch, 0)
            for step in range(cfg.steps):
                tokens = torch.from_numpy(pending.result()).to(device)
                if step + 1 < cfg.steps:
                    pending = pool.submit(batch, step + 1)
                loss = _step(model, opt, tokens, cfg, step, tensor)
                since.append(loss)
                if on_step is not None:
                    on_step(step + 1, loss)
                done = step + 1
                if done % cfg.eval_every == 0 or done == cfg.steps:
                    record(done)
                checkpoint(done)
        result.wall_s = time.perf_counter() - start
        model.cpu().eval()
        model.meta = _meta(cfg, spec, cfg.steps, result.final_excess, str(device))
        if output is not None:
            _save(model, Path(output), model.meta)
    except (KeyboardInterrupt, CraftError) as e:
        stop = _Stopped(done, cfg.steps, log_path, result.records, result.checkpoints)
        if log is not None:
            log.write(json.dumps(stop.record(e)) + "\n")
        if isinstance(e, KeyboardInterrupt):
            raise KeyboardInterrupt(stop.kept()) from None
        raise
    finally:
        if log is not None:
            log.close()
    return result


@dataclass(frozen=True)
class _Stopped:
    """What a run stopped early (Ctrl-C, SIGTERM, a diverged loss, a failed write) kept.

    The log gets a last record ``{"stopped": ..., "step", "model_written": false,
    "checkpoints"}``, so a log never looks like the log of a finished run; the one line
    the CLI prints says what is on disk: the log up to the last evaluation and the
    checkpoints written (each complete: they are written atomically).
    """

    step: int
    steps: int
    log_path: str | Path | None
    records: list[dict]
    checkpoints: list[Path]

    def record(self, e: BaseException) -> dict:
        why = "interrupted" if isinstance(e, KeyboardInterrupt) else str(e)
        return {
            "stopped": why,
            "step": self.step,
            "model_written": False,
            "checkpoints": [str(p) for p in self.checkpoints],
        }

    def kept(self) -> str:
        kept = []
        if self.log_path is not None and self.records:
            kept.append(f"the log {self.log_path} (to step {self.records[-1]['step']})")
        if self.checkpoints:
            folder = self.checkpoints[-1].parent
            kept.append(f"{len(self.checkpoints)} complete checkpoints in {folder}/")
        what = " and ".join(kept) if kept else "nothing"
        where = f"stopped at step {self.step} of {self.steps}"
        return f"{where}; the model was not written; kept {what}"


def _open_log(path: str | Path | None):
    if path is None:
        return None
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("w", encoding="utf-8")
    except OSError as e:
        raise CraftError(f"cannot write the log ({e.strerror or e})", where=str(path)) from None


def _step(
    model: Transformer, opt, tokens: torch.Tensor, cfg: TrainConfig, step: int, tensor: bool
) -> float:
    """One optimiser step on ``tokens [B, 1 + L]``; returns the cross-entropy."""
    for group in opt.param_groups:
        group["lr"] = lr_at(step, cfg.lr, cfg.steps, cfg.warmup, cfg.min_lr_ratio)
    logits = model(tokens[:, :-1])  # [B, L, V]
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
    total = loss
    if tensor and cfg.qk_control == "penalty":
        total = loss + cfg.qk_penalty * qk_penalty(model).to(loss.device)
    opt.zero_grad(set_to_none=True)
    total.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    if tensor and cfg.qk_control == "clamp":
        clamp_qk(model, cfg.qk_max_norm)
    value = float(loss.detach())
    if not math.isfinite(value):
        raise CraftError(
            f"the training loss became {value} at step {step}",
            where=f"train ({cfg.family} family, lr {cfg.lr})",
            fix="lower --lr, or for the tensor family keep the Q/K norm control on",
        )
    return value


def with_overrides(cfg: TrainConfig, **changes: object) -> TrainConfig:
    """A copy of ``cfg`` with the non-None ``changes`` applied (validated again)."""
    return replace(cfg, **{k: v for k, v in changes.items() if v is not None})
