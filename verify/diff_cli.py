"""``craft diff CRAFTED TRAINED --spec SPEC -o report/``: did training find my circuit?

Prints a summary (per crafted component: match, similarity, ablation effect, share of
its rules' output it carries under patching, verdict;
per rule: both models' excess loss and accuracy and their agreement) and writes the
report (``report.md`` and ``figures/*.png``, see :mod:`verify.report`). ``--json``
prints :meth:`verify.diff.Diff.to_json` instead of the summary (the report is still
written, and ``report.html``, the same report with every figure and the attention
patterns of both models on a prompt per rule, self-contained and interactive: see
:mod:`verify.html_report`). Errors are :class:`~specs.errors.CraftError` (one line,
exit code 2 in the CLI).

With a run folder as TRAINED (the checkpoints of ``craft train --save-every N``) it
diffs over training instead (:mod:`verify.series`): per crafted component the match
similarity and role score against the step, per rule the excess loss, the step each
component is found and each rule learned, ``series.md`` and two figures.

Example:
    $ craft diff crafted.safetensors trained.safetensors --spec toy.yaml -o report/
    $ craft diff crafted.safetensors out/toy_run/ --spec toy.yaml -o series/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from craft.models import component_records, load_model
from craft.output import print_json
from craft.paths import PathArg, refuse_overwrites
from specs.errors import CraftError
from specs.load import load_spec
from verify.behaviour import check_finite
from verify.diff import Diff, check_fit, diff
from verify.html_report import diff_page, write_html
from verify.report import carried, effect, write_report
from verify.series import LEARNED, series, write_series


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
    p.add_argument(
        "trained",
        metavar="TRAINED",
        help="trained model file (.safetensors), or a run folder of checkpoints "
        "(craft train --save-every N writes OUT_run/) to diff over training",
    )
    p.add_argument("--spec", required=True, help="spec file both models were made for")
    p.add_argument("-o", "--output", required=True, help="report folder to write")
    p.add_argument(
        "-n",
        "--n",
        type=_positive,
        help="sequences to sample (default 500; 200 per checkpoint over a run folder)",
    )
    p.add_argument("--seed", type=_seed, default=0, help="sampling seed (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead")
    p.set_defaults(run=run)
    return p


WIDTH = 100  # the summary fits a 100-column terminal


def _rich_table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]], first: bool):
    """A rich table; the first column never wraps (component and rule names stay whole)."""
    from rich import box
    from rich.table import Table

    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for k, name in enumerate(header):
        wide = name.startswith("zero-ablation")  # the one long text cell: left, takes the room
        t.add_column(name, no_wrap=first and k == 0, ratio=1 if wide else None,
                     justify="left" if k == 0 or wide else "right")  # fmt: skip
    for r in rows:
        t.add_row(*r)
    return t


def summary(d: Diff, width: int = WIDTH) -> str:
    """The summary tables (components, then behaviour per rule) as rich tables that fit
    ``width`` columns (long cells wrap inside their column)."""
    import io

    from rich.console import Console

    rows, effects = [], []
    for c in d.components:
        heads = ", ".join(f"L{la}H{h}" for la, h in c.match.heads) or "-"
        sim = f"{c.match.similarity:.3f}"
        rows.append((c.match.component.name, heads, sim, carried(c), c.verdict))
        effects.append((c.match.component.name, effect(c)))
    header = ("component", "match", "similarity", "patching carried", "verdict")
    components = _rich_table("components", header, rows, True)
    header = ("component", "zero-ablation, the rules it hurts most: crafted -> trained")
    ablations = _rich_table("ablation (excess loss rise, nats)", header, effects, True)
    direct = "n/a (crafted is constant)" if d.direct is None else f"{d.direct:.3f}"
    rows = []
    overall = (d.crafted.overall, d.trained.overall, d.agreement_overall)
    per_rule = [(r, a, d.trained.rules.get(r, d.trained.overall), d.agreement.get(r, float("nan")))
                for r, a in d.crafted.rules.items()]  # fmt: skip
    for rule, a, b, agree in [*per_rule, ("(every position)", *overall)]:
        rows.append((rule, f"{a.kl:.4f}", f"{b.kl:.4f}", f"{a.accuracy:.3f}",
                     f"{b.accuracy:.3f}", f"{agree:.4f}"))  # fmt: skip
    header = ("rule", "excess crafted", "excess trained", "acc crafted", "acc trained",
              "KL c||t")  # fmt: skip
    out = io.StringIO()
    console = Console(file=out, width=width, markup=False, highlight=False, color_system=None)
    console.print(components)
    console.print(ablations)
    console.print(f"direct path similarity: {direct}")
    console.print(_rich_table("behaviour per rule", header, rows, True))
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]


def _written(write, where: str) -> Path:
    try:
        return write()
    except OSError as e:
        raise CraftError(
            f"cannot write the report ({e.strerror or e})",
            where=where,
            fix="write to a folder that exists (or can be created) and is writable",
        ) from None


def _run_series(args: argparse.Namespace, crafted, spec) -> int:
    """The checkpoint-series mode: curves, order found, ``series.md`` and two figures."""
    from rich.progress import Progress

    with Progress(transient=True, disable=args.json) as bar:
        task = bar.add_task("checkpoints", total=None)
        s = series(
            crafted,
            args.trained,
            spec,
            n_seqs=args.n or 200,
            seed=args.seed,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    path = _written(lambda: write_series(s, args.output), args.output)
    if args.json:
        print_json(_tagged("craft-diff-series/1", args, spec, s.to_json()))
        return 0
    found, learned = s.found_at(), s.learned_at()
    print(f"{args.crafted} (crafted) vs {len(s.points)} checkpoints in {args.trained}")
    rows = [("component", "found at step", "final similarity", "final role")]
    last = s.points[-1]
    for c in s.components:
        at = "-" if found[c] is None else str(found[c])
        rows.append((c, at, f"{last.similarity[c]:.3f}", f"{last.role[c]:.3f}"))
    rows += [("", "", "", ""), ("rule", f"excess < {LEARNED} from step", "final excess", "")]
    for r in s.rules:
        at = "-" if learned[r] is None else str(learned[r])
        rows.append((r, at, f"{last.excess[r]:.4f}", ""))
    print("\n".join(_table(rows)))
    print(f"order found: {', '.join(c for c, _ in s.order()) or 'none'}")
    print(f"report: {path}")
    return 0


def _tagged(tag: str, args: argparse.Namespace, spec, obj: dict) -> dict:
    """The JSON convention of every craft command: a format tag, the models and the spec
    (``{name, sha256}``) first, then the result."""
    head = {"format": tag, "crafted": args.crafted, "trained": args.trained}
    return head | obj | {"spec": {"name": spec.name, "sha256": spec.sha256}}


def _refuse_overwrites(args: argparse.Namespace) -> None:
    """The report folder (and the markdown written in it) is no input."""
    out = Path(args.output)
    refuse_overwrites(
        [
            PathArg("CRAFTED", args.crafted),
            PathArg("TRAINED", args.trained),
            PathArg("--spec", args.spec),
        ],
        [PathArg("-o", out, "the report")]
        + [
            PathArg("-o", out / name, "the report")
            for name in ("report.md", "report.html", "series.md")
        ],
    )


def run(args: argparse.Namespace) -> int:
    """Run ``craft diff``; returns 0. Raises CraftError on bad files or models."""
    _refuse_overwrites(args)
    crafted = load_model(args.crafted)
    spec = load_spec(args.spec)
    if not component_records(crafted):
        raise CraftError(
            "the crafted model names no components",
            where=args.crafted,
            fix="pass a model made by `craft compile` as CRAFTED",
        )
    check_finite(crafted, where=args.crafted)
    if Path(args.trained).is_dir():
        return _run_series(args, crafted, spec)
    trained = load_model(args.trained)
    check_fit(crafted, trained, spec, (args.crafted, args.trained))
    result = diff(crafted, trained, spec, n_seqs=args.n or 500, seed=args.seed)
    path = _written(lambda: write_report(result, args.output, spec), args.output)
    page = diff_page(result, crafted, trained, spec, (args.crafted, args.trained))
    _written(lambda: write_html(page, Path(args.output) / "report.html"), args.output)
    if args.json:
        print_json(_tagged("craft-diff/1", args, spec, result.to_json()))
        return 0
    print(
        f"{args.crafted} (crafted) vs {args.trained} (trained) on spec {spec.name}: "
        f"{result.n_seqs} sequences of {result.length} tokens, seed {result.seed}"
    )
    print(summary(result))
    print(f"report: {path}")
    return 0
