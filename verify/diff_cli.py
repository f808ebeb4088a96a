"""``craft diff CRAFTED TRAINED --spec SPEC -o report/``: did training find my circuit?

Prints a summary (per crafted component: match, similarity, ablation effect, share of
its rules' output it carries under patching, verdict;
per rule: both models' excess loss and accuracy and their agreement) and writes the
report (``report.md`` and ``figures/*.png``, see :mod:`verify.report`). ``--json``
prints :meth:`verify.diff.Diff.to_json` instead of the summary (the report is still
written). Errors are :class:`~specs.errors.CraftError` (one line, exit code 2 in the CLI).

Example:
    $ craft diff crafted.safetensors trained.safetensors --spec toy.yaml -o report/
"""

from __future__ import annotations

import argparse
import json

from craft.models import load_model
from specs.errors import CraftError
from specs.load import load_spec
from verify.diff import Diff, diff
from verify.report import carried, effect, write_report


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``diff`` to ``craft``'s subparsers; the parser's default ``run`` is :func:`run`."""
    p = subparsers.add_parser(
        "diff", help="compare a crafted model with a trained one (behaviour, weights, ablation)"
    )
    p.add_argument("crafted", metavar="CRAFTED", help="compiled model file (.safetensors)")
    p.add_argument("trained", metavar="TRAINED", help="trained model file (.safetensors)")
    p.add_argument("--spec", required=True, help="spec file both models were made for")
    p.add_argument("-o", "--output", required=True, help="report folder to write")
    p.add_argument("-n", "--n", type=_positive, default=500, help="sequences to sample")
    p.add_argument("--seed", type=_seed, default=0, help="sampling seed")
    p.add_argument("--json", action="store_true", help="print one JSON document instead")
    p.set_defaults(run=run)
    return p


def summary(d: Diff) -> str:
    """Plain-text summary tables (components, then behaviour per rule)."""
    rows = [
        (
            "component",
            "match",
            "similarity",
            "zero-ablation crafted -> trained",
            "patching carried",
            "verdict",
        )
    ]
    for c in d.components:
        heads = ", ".join(f"L{la}H{h}" for la, h in c.match.heads) or "-"
        sim = f"{c.match.similarity:.3f}"
        rows.append((c.match.component.name, heads, sim, effect(c), carried(c), c.verdict))
    lines = _table(rows)
    direct = "n/a (crafted is constant)" if d.direct is None else f"{d.direct:.3f}"
    lines += ["", f"direct path similarity: {direct}", ""]
    rows = [("rule", "excess crafted", "excess trained", "acc crafted", "acc trained", "KL c||t")]
    evals = [({**d.crafted.rules, "overall": d.crafted.overall}), d.trained.rules]
    for rule, a in evals[0].items():
        b = evals[1].get(rule, d.trained.overall)
        rows.append(
            (
                rule,
                f"{a.kl:.4f}",
                f"{b.kl:.4f}",
                f"{a.accuracy:.3f}",
                f"{b.accuracy:.3f}",
                f"{d.agreement.get(rule, float('nan')):.4f}",
            )
        )
    return "\n".join(lines + _table(rows))


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]


def run(args: argparse.Namespace) -> int:
    """Run ``craft diff``; returns 0. Raises CraftError on bad files or models."""
    crafted, trained = load_model(args.crafted), load_model(args.trained)
    spec = load_spec(args.spec)
    if not crafted.meta.get("components"):
        raise CraftError(
            "the crafted model names no components",
            where=args.crafted,
            fix="pass a model made by `craft compile` as CRAFTED",
        )
    result = diff(crafted, trained, spec, n_seqs=args.n, seed=args.seed)
    try:
        path = write_report(result, args.output)
    except OSError as e:
        raise CraftError(
            f"cannot write the report ({e.strerror or e})",
            where=args.output,
            fix="write to a folder that exists (or can be created) and is writable",
        ) from None
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    print(
        f"{args.crafted} (crafted) vs {args.trained} (trained) on spec {spec.name}: "
        f"{result.n_seqs} sequences of {result.length} tokens, seed {result.seed}"
    )
    print(summary(result))
    print(f"report: {path}")
    return 0
