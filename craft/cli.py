"""The ``craft`` command line: compile, eval, sample, inspect.

Every user error (a :class:`~specs.errors.CraftError`, a usage error, an unreadable or
unwritable file) prints as one line ``craft: error: <message>`` on stderr and exits
with code 2; spec warnings print as ``craft: warning: <message>``. Output files are
written atomically, so a failed command leaves none behind. This is the only module of
``craft`` that imports ``verify``.

Example:
    $ craft compile specs/library/toy_language.yaml -o out/toy.safetensors --family tensor
    $ craft eval out/toy.safetensors --spec specs/library/toy_language.yaml --n 500
    $ craft sample specs/library/induction.yaml -n 3 --seed 1 --json
    $ craft inspect out/toy.safetensors --directions
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from craft import export_cli, import_cli
from craft.argtypes import DefaultsHelpFormatter, int_at_least, positive_float
from craft.compiler import COMPILER_VERSION, FAMILIES, compile_spec
from craft.compiler.compact import Shape, compile_compact, smallest
from craft.compiler.positions import derive_positions
from craft.interrupts import interrupted_line, signals_as_interrupts
from craft.memory import limited, parse_size, require
from craft.models import load_model, save_model
from craft.output import emit, new_console, warn, warn_other_spec
from craft.paths import PathArg, guarded, import_paths, refuse_overwrites, tracr_paths
from craft.report import (
    eval_table,
    model_summary,
    never_fired,
    over_bound,
    print_summary,
    search_table,
)
from craft.tracr import cli as tracr_cli
from craft.train import cli as train_cli
from specs.errors import CraftError, CraftWarning
from specs.load import load_spec
from specs.sample import sample, sample_bytes
from verify import check_cli, diff_cli, html_report
from verify.behaviour import at_context, evaluate
from verify.replay import replay_dir
from verify.tracr_check import check as tracr_check

DEFAULT_MAX_KL = 1e-3  # --smallest: the bound every rule must meet
EXIT_USAGE = 2  # every user error: bad arguments, bad spec, unreadable or unwritable file


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are CraftErrors (one line, exit code 2)."""

    def error(self, message: str) -> NoReturn:
        raise CraftError(message, fix=f"see `{self.prog} --help`")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, CraftWarning):
        warn(str(message))
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _budget_args(args: argparse.Namespace) -> None:
    """Options that only make sense with a size budget are errors without one."""
    budget = args.shape is not None or args.smallest
    if args.shape is not None and args.smallest:
        raise CraftError("--shape and --smallest both given", fix="give one of them")
    for flag, given in (("--attn-only", args.attn_only), ("--d-head", args.d_head is not None)):
        if given and not budget:
            raise CraftError(
                f"{flag} needs a size budget",
                where=flag,
                fix="add --shape LxHxD (e.g. --shape 2x4x64) or --smallest",
            )
    if args.max_kl is not None and not args.smallest:
        raise CraftError("--max-kl needs --smallest", where="--max-kl", fix="add --smallest")
    if args.dtype is not None and budget:
        raise CraftError(
            "--dtype applies to the one-hot compiler; compact models are float32",
            where="--dtype",
            fix="drop --dtype, or drop --shape/--smallest",
        )
    if args.layers is not None and budget:
        raise CraftError(
            "--layers applies to the one-hot compiler; a size budget sets its own layers",
            where="--layers",
            fix="drop --layers, or give the layers in --shape LxHxD",
        )


def cmd_compile(args: argparse.Namespace) -> int:
    _budget_args(args)
    refuse_overwrites([PathArg("SPEC", args.spec)], [PathArg("-o", args.output, "the model")])
    spec = load_spec(args.spec)
    curve = None
    if args.shape is not None or args.smallest:
        if args.smallest:
            shape, curve = smallest(spec, args.max_kl or DEFAULT_MAX_KL, args.family)
        else:
            shape = Shape.parse(args.shape, args.d_head)
        model = compile_compact(spec, shape, args.family, COMPILER_VERSION).model
        what = f"attention-only, shape {shape}"
    else:
        compiled = compile_spec(spec, args.family, args.dtype, args.layers)
        model, what = compiled.model, f"{compiled.plan.n_layers} layers"
    if args.positions == "none":
        model = derive_positions(model, args.dtype)
        what = f"{what} + 1 layer deriving positions, {model.cfg.n_layers} in all"
    save_model(model, args.output)
    summary = model_summary(model)
    if curve is not None:
        summary["searched"] = [c.to_json() for c in curve]
    if args.json:
        emit("compile", summary, model=args.output, spec=spec)
        return 0
    console = new_console()
    if curve is not None:
        console.print(search_table(summary["searched"]))
    console.print(
        f"compiled spec {spec.name} ({spec.source}) -> {args.output}"
        f" ({args.family} family, {what})",
        soft_wrap=True,
    )
    print_summary(console, summary)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    spec = load_spec(args.spec)
    warn_other_spec(model, spec, args.model, args.spec, "evaluating")
    if args.context is not None:
        if args.html:
            raise CraftError(
                "--html reports a sampled evaluation, not one --context",
                where="--html",
                fix="drop --context to write the report, or --html to see the context",
            )
        return _eval_context(model, spec, args)
    evaluation = evaluate(model, spec, n_seqs=args.n, length=args.length, seed=args.seed)
    if evaluation.non_finite:
        warn(
            f"{args.model}: the model's logits are NaN or inf at {evaluation.non_finite} of "
            f"{evaluation.overall.n} positions (it diverged, or its weights are corrupt); "
            "its KL and cross-entropy are nan and those positions count as wrong"
        )
    result = evaluation.to_json()
    if args.html:
        html_report.write_eval_report(model, spec, evaluation, args)
    if args.json:
        emit("eval", result, model=args.model, spec=spec)
        return 0
    bounds = dict(model.meta.get("bounds") or {})
    console = new_console()
    length = spec.max_len if args.length is None else args.length
    console.print(
        f"{args.model} on spec {spec.name}: {args.n} sampled sequences of "
        f"{length} tokens (seed {args.seed}), model run in float64",
        soft_wrap=True,
    )
    console.print(eval_table(result, bounds))
    if "where_exact" in result:
        n = result["where_exact"]["overall"]["n"]
        console.print(
            f"where the model's stated conditions hold ({n} of {result['overall']['n']}"
            " positions; its bound is claimed there):"
        )
        console.print(eval_table(result["where_exact"], bounds))
        for condition in model.meta.get("conditions", []):
            console.print(f"  condition: {condition}", soft_wrap=True)
    exceeded = over_bound(result.get("where_exact", result), bounds)
    if exceeded:
        note = " (the bounds hold only where the stated conditions hold)"
        console.print(
            f"max KL above the stated bound for: {', '.join(exceeded)}"
            + (note if model.meta.get("conditions") else "")
        )
    silent = never_fired(result, spec.rule_names())
    if silent:
        console.print(f"never fired in this sample: {', '.join(silent)}")
    return 0


def _eval_context(model, spec, args: argparse.Namespace) -> int:
    """``craft eval --context "the alice"``: both distributions after one context."""
    report = at_context(model, spec, args.context.split())
    if not all(math.isfinite(q) for q in report.model.values()):
        warn(f"{args.model}: the model's output after this context is NaN or inf")
    bound = (model.meta.get("bounds") or {}).get(report.rule)
    if args.json:
        got = report.to_json()  # "spec"/"model" are distributions here: named apart
        got |= {"expected": got.pop("spec"), "predicted": got.pop("model"), "bound": bound}
        emit("eval-context", got, model=args.model, spec=spec)
        return 0
    console = new_console()
    shown = " ".join(report.context) or "(BOS only)"
    bound_text = f" (bound {bound:.3g})" if bound is not None else ""
    if bound is not None and not report.claimed:
        bound_text = f" (bound {bound:.3g} not claimed: a stated condition fails here)"
    console.print(
        f"context: {shown}; rule: {report.rule}; KL {report.kl:.3g}{bound_text}", soft_wrap=True
    )
    if not report.claimed:
        for condition in model.meta.get("conditions", []):
            console.print(f"  condition: {condition}", soft_wrap=True)
    mass = {t: max(q, report.spec.get(t, 0.0)) for t, q in report.model.items()}
    for token in sorted((t for t in mass if mass[t] > 1e-6), key=lambda t: -mass[t])[:12]:
        p, q = report.spec.get(token, 0.0), report.model[token]
        console.print(f"  {token:>12}  spec {p:.6f}  model {q:.6f}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    length = spec.max_len if args.length is None else args.length
    require("sampling", sample_bytes(spec, args.n, length), "pass a smaller -n or --length")
    tokens, rule_ids = sample(spec, args.n, length, args.seed)
    names = spec.rule_names()
    if args.json:  # one JSON object, one sequence a line, printed as it is made
        head = {"format": "craft-sample/1", "spec": {"name": spec.name, "sha256": spec.sha256}}
        head |= {"seed": args.seed, "length": length}
        print(json.dumps(head)[:-1] + ', "sequences": [')
    for i, (row, rules) in enumerate(zip(tokens, rule_ids, strict=True)):
        words = spec.vocab.decode(row[1:])
        if args.json:
            line = json.dumps({"tokens": words, "rules": [names[int(r)] for r in rules]})
            print(line + ("," if i + 1 < len(tokens) else ""))
        else:
            print(" ".join(words))
    if args.json:
        print("]}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    summary = {"file": args.model, **model_summary(model, directions=args.directions)}
    if args.json:
        emit("inspect", summary, model=args.model)
        return 0
    console = new_console()
    console.print(f"model file {args.model}")
    print_summary(console, summary)
    return 0


def _compile_parser(sub) -> None:
    """``craft compile``: the one-hot default, or a size budget (``--shape``/``--smallest``)."""
    p = sub.add_parser("compile", help="compile a spec into a model file")
    p.add_argument("spec", metavar="SPEC", help="spec file (YAML or JSON)")
    p.add_argument("-o", "--output", required=True, help="model file to write (.safetensors)")
    p.add_argument("--family", choices=FAMILIES, default="standard", help="model family")
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        help="the float type of the weights (default: float32 unless the model outgrows it: "
        "tensor induction at long max_len, bracket rules past max_len 255; the report "
        "states the limit)",
    )
    p.add_argument(
        "--positions",
        choices=("learned", "none"),
        default="learned",
        help="none: no positional embedding; a first layer derives it (standard family)",
    )
    p.add_argument(
        "--layers",
        type=int_at_least(1),
        help="at most this many layers (default: as many as exactness needs; the tensor "
        "family's exact readouts take extra ones, without them it states conditions)",
    )
    p.add_argument(
        "--shape",
        metavar="LxHxD",
        help="size budget: layers x heads per layer x d_model (compact codes, attention-only)",
    )
    p.add_argument(
        "--attn-only",
        action="store_true",
        help="with --shape/--smallest: no MLPs (the compact construction never uses any)",
    )
    p.add_argument(
        "--d-head", type=int_at_least(1), help="head width with --shape (default d_model/heads)"
    )
    p.add_argument(
        "--smallest",
        action="store_true",
        help="search the smallest shape the construction fits, print the curve searched",
    )
    p.add_argument(
        "--max-kl",
        type=positive_float,
        help=f"with --smallest: the max KL the shape must guarantee (default {DEFAULT_MAX_KL})",
    )
    p.set_defaults(run=cmd_compile)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="craft", description="Compile circuit specs into transformer weights.")
    parser.add_argument("--version", action="version", version=f"craft {COMPILER_VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _compile_parser(sub)

    p = sub.add_parser("eval", help="compare a model's predictions with a spec's ground truth")
    p.add_argument("model", metavar="MODEL", help="model file (.safetensors)")
    p.add_argument("--spec", required=True, help="spec file giving the ground truth")
    p.add_argument("-n", "--n", type=int_at_least(1), default=2000, help="sequences to sample")
    p.add_argument("--length", type=int_at_least(1), help="tokens per sequence (max_len)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="sampling seed")
    p.add_argument(
        "--context",
        help='instead of sampling, compare both distributions after one context ("the alice")',
    )
    p.add_argument(
        "--html",
        metavar="OUT.html",
        help="also write an interactive report (tables, figures, attention on prompts)",
    )
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("sample", help="sample sequences from a spec")
    p.add_argument("spec", metavar="SPEC", help="spec file (YAML or JSON)")
    p.add_argument("-n", "--n", type=int_at_least(1), default=5, help="number of sequences")
    p.add_argument("--length", type=int_at_least(0), help="tokens per sequence (max_len)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="sampling seed")
    p.set_defaults(run=cmd_sample)

    p = sub.add_parser("inspect", help="describe a model file")
    p.add_argument("model", metavar="MODEL", help="model file (.safetensors)")
    p.add_argument("--directions", action="store_true", help="list every residual direction")
    p.set_defaults(run=cmd_inspect)

    for p in sub.choices.values():
        p.add_argument("--json", action="store_true", help="print one JSON document instead")
    # these declare their own --json; craft tracr checks with verify's Hypothesis search
    tracr_cli.add_parser(sub, check=tracr_check, replay_dir=str(replay_dir())).set_defaults(
        run=guarded(tracr_cli.run, tracr_paths)
    )
    import_cli.add_parser(sub).set_defaults(run=guarded(import_cli.run, import_paths))
    train_cli.add_parser(sub)
    export_cli.add_parser(sub)
    check_cli.add_parser(sub)
    diff_cli.add_parser(sub)
    for command in sub.choices.values():  # every subcommand: defaults shown, plain text
        command.formatter_class = DefaultsHelpFormatter
        if command.description:
            command.description = command.description.replace("``", "`")
        command.add_argument(
            "--max-memory",
            type=parse_size,
            metavar="SIZE",
            help="refuse work estimated to need more memory (4G, 512M; default: what is free)",
        )
    return parser


def _os_message(e: OSError) -> str:
    what = e.strerror or str(e)
    return f"{e.filename}: {what}" if e.filename else what


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``craft`` command line; returns the exit code (0, 2 on any user error, 130
    on Ctrl-C and 143 on SIGTERM, each with one line on stderr)."""
    with signals_as_interrupts() as received:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", CraftWarning)
                warnings.showwarning = _show_warning
                args = build_parser().parse_args(argv)
                with limited(args.max_memory):
                    return args.run(args)
        except CraftError as e:
            message = str(e)
        except OSError as e:
            message = _os_message(e)
        except SystemExit as e:  # --help and --version exit through argparse
            return e.code if isinstance(e.code, int) else 0
        except KeyboardInterrupt as e:
            line, code = interrupted_line(e, received)
            print(line, file=sys.stderr)
            return code
    print(f"craft: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
