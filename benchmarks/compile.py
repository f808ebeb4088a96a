"""Compile-time and memory benchmark: how far does ``spec -> weights`` scale?

Run ``python benchmarks/compile.py`` (``--quick`` for a smoke run, ``--json`` for
machine-readable output). Every case runs in a fresh Python process, so its peak-RSS
delta is its own and a crash (out of memory, timeout) is reported, not fatal.

Cases, each in both families (standard, tensor):

* the library specs (``specs/library/*.yaml``), loaded from their files;
* synthetic specs built in code with ``V`` = 100, 1,000 and 5,000 tokens, max_len 32:

  - ``bigram-V``: categories of 10 tokens; one bigram rule with a row for every token
    (3 random next tokens, 1/2, 3/10, 1/5) plus a ``"*"`` fallback row;
  - ``skip-V``: ``V/20`` deterministic skip-bigram rules, window [2, 9] (a random
    anchor token, a distinct cue category per rule, a random target), then the bigram
    table above as the fallback.

Columns: load (text or dict -> resolved Spec, :func:`specs.load.parse_spec`) and
compile (:func:`craft.compiler.compile_spec`) are timed separately, median of 3 runs
with ``time.perf_counter``; "peak MB" is the tracemalloc peak of one compile call
(Python and numpy allocations; torch tensors are invisible to it), "RSS MB" the rise
of the process's peak resident set over the first compile call (everything).
Targets: toy language compiles in under 0.5 s, 5,000-token specs in under 10 s.

torch runs on one thread by default (``--threads``): compiling is mostly Python, and
on a busy machine torch's thread pool oversubscribes the cores (the toy language took
0.3 s with 2 threads beside another busy process, 0.02 s with 1).

A second table sets the compact compiler (:mod:`craft.compiler.compact`, attention-only
standard family under a size budget) beside the one-hot standard model, each case again
in a fresh process:

* every library spec at ``--smallest`` (``--max-kl``, default 1e-3): the shape
  :func:`~craft.compiler.compact.smallest` picks (LxHxD, d_head), its d_model and
  parameters, the largest per-rule bound, and the time of ``smallest()`` +
  ``compile_compact()``;
* the toy language at ``--shape 2x4x64``: the time of ``compile_compact()`` alone.
  Target: under 5 s.

Compact times are the median of 3 runs after one warm-up run ("first s" is the
warm-up, cold); the one-hot d_model and parameters are those of the standard rows above.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

FAMILIES = ("standard", "tensor")
LIBRARY = ("toy_language", "bigram", "skip_trigram", "induction")
SIZES = (100, 1_000, 5_000)
QUICK_SIZES = (100, 1_000)
REPEATS = 3
SLOW_S = 60.0  # a compile slower than this is run once, without tracemalloc
CASE_TIMEOUT_S = 900  # a case (all its runs) killed after this long is reported as TIMEOUT
TARGETS = {"toy_language": 0.5, 5_000: 10.0}  # compile seconds, by library name or V
SMALLEST = "smallest"  # a compact case's budget: the smallest fitting shape, or "LxHxD"
COMPACT = tuple((name, SMALLEST) for name in LIBRARY) + (("toy_language", "2x4x64"),)
COMPACT_TARGETS = {("toy_language", "2x4x64"): 5.0}  # compile seconds, by (spec, budget)
MAX_KL = 1e-3


def synthetic_spec(kind: str, v: int, seed: int = 0, max_len: int = 32) -> dict[str, Any]:
    """A synthetic spec as parsed-YAML data (feed it to :func:`specs.load.parse_spec`).

    Args:
        kind: ``"bigram"`` or ``"skip"`` (skip-bigram rules over a bigram fallback).
        v: vocabulary size, a multiple of 20.
        seed: seed of the random tables.
        max_len: positions after BOS.
    """
    if kind not in ("bigram", "skip") or v % 20:
        raise ValueError(f"synthetic_spec: kind {kind!r}, v={v}: want bigram|skip, v % 20 == 0")
    rng = random.Random(seed)
    tokens = [f"w{i}" for i in range(v)]
    cats = {f"C{c}": tokens[10 * c : 10 * c + 10] for c in range(v // 10)}
    table: dict[str, dict[str, float]] = {
        tok: dict(zip(rng.sample(tokens, 3), (0.5, 0.3, 0.2), strict=True)) for tok in tokens
    }
    table["*"] = {"C0": 1}
    rules: list[dict[str, Any]] = []
    if kind == "skip":
        cues = rng.sample(sorted(cats), v // 20)
        for i, cue in enumerate(cues):
            anchor, target = rng.choice(tokens), rng.choice(tokens)
            skip = {"anchor": anchor, "cue": cue, "window": [2, 9], "next": {target: 1}}
            rules.append({"name": f"skip{i}", "skip_bigram": skip})
    rules.append({"name": "table", "bigram": table})
    return {
        "format": "craft-spec/1",
        "name": f"synthetic-{kind}-{v}",
        "vocab": cats,
        "max_len": max_len,
        "start": {"*": 1},
        "rules": rules,
    }


@dataclass(frozen=True)
class Case:
    """One spec to benchmark: a library name or a synthetic kind and size."""

    name: str
    vocab: int | None = None  # None: library spec
    kind: str = ""

    def loader(self) -> Callable[[], Any]:
        from specs.load import library_path, load_spec, parse_spec

        if self.vocab is None:
            path = library_path(self.name)
            return lambda: load_spec(path)
        data = synthetic_spec(self.kind, self.vocab)
        return lambda: parse_spec(data, source=self.name)

    @property
    def target(self) -> float | None:
        return TARGETS.get(self.name if self.vocab is None else self.vocab)


@dataclass
class Row:
    """One measured (case, family) pair; ``status`` is ok, MemoryError, TIMEOUT, ..."""

    spec: str
    family: str
    vocab: int | None = None
    load_s: float | None = None
    compile_s: float | None = None
    runs: int = 0
    peak_mb: float | None = None
    rss_mb: float | None = None
    d_model: int | None = None
    layers: int | None = None
    heads: int | None = None
    params: int | None = None
    target_s: float | None = None
    status: str = "ok"
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.status != "ok":
            return "FAIL"
        if self.target_s is None:
            return ""
        return "PASS" if self.compile_s is not None and self.compile_s < self.target_s else "FAIL"


@dataclass
class CompactRow:
    """One compact case: a library spec under a budget (``smallest`` or ``LxHxD``)."""

    spec: str
    budget: str
    shape: str | None = None  # LxHxD compiled
    d_head: int | None = None
    d_model: int | None = None
    params: int | None = None
    max_bound: float | None = None  # largest per-rule bound on KL(spec || model)
    first_s: float | None = None  # the warm-up run
    compile_s: float | None = None  # median of the runs after it
    runs: int = 0
    onehot_d_model: int | None = None  # the standard one-hot model, filled in by main
    onehot_params: int | None = None
    target_s: float | None = None
    status: str = "ok"

    verdict = Row.verdict  # the same rule: not ok, or over the target, fails


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(case: Case, family: str, threads: int = 1, repeats: int = REPEATS) -> Row:
    """Time loading and compiling one case in this process (call in a fresh process)."""
    import torch

    from craft.compiler import compile_spec

    torch.set_num_threads(threads)
    row = Row(case.name, family, case.vocab, target_s=case.target)
    load, loads, compiles = case.loader(), [], []
    started = time.perf_counter()
    try:
        for i in range(repeats):
            t0 = time.perf_counter()
            spec = load()
            loads.append(time.perf_counter() - t0)
            rss0 = _maxrss_mb()
            t0 = time.perf_counter()
            compiled = compile_spec(spec, family)
            compiles.append(time.perf_counter() - t0)
            if i == 0:
                row.rss_mb = _maxrss_mb() - rss0
                cfg = compiled.model.cfg
                row.d_model, row.layers, row.heads = cfg.d_model, cfg.n_layers, cfg.n_heads
                row.params = compiled.model.n_params()
            del compiled
            if time.perf_counter() - started > SLOW_S:
                break
        if len(compiles) < repeats:
            row.note = f"load + compile over {SLOW_S:g} s: stopped after {len(compiles)} run(s)"
        if compiles[-1] > SLOW_S:
            row.note += ", tracemalloc run skipped"
        else:
            tracemalloc.start()
            compile_spec(spec, family)
            row.peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
    except MemoryError:
        row.status = f"MemoryError after {time.perf_counter() - started:.1f} s"
    row.runs = len(compiles)
    row.load_s = statistics.median(loads) if loads else None
    row.compile_s = statistics.median(compiles) if compiles else None
    return row


def measure_compact(
    name: str, budget: str, max_kl: float, threads: int = 1, repeats: int = REPEATS
) -> CompactRow:
    """Time compiling library spec ``name`` compactly, in this process (call in a fresh one).

    ``budget`` is ``"smallest"`` (time ``smallest()`` + ``compile_compact()``) or a shape
    ``"LxHxD"`` (time ``compile_compact()``). One warm-up run, then ``repeats`` timed runs.
    """
    import torch

    from craft.compiler.compact import Shape, compile_compact, smallest
    from specs.errors import CraftError
    from specs.load import load_library

    torch.set_num_threads(threads)
    spec = load_library(name)

    def once() -> Any:
        shape = smallest(spec, max_kl)[0] if budget == SMALLEST else Shape.parse(budget)
        return compile_compact(spec, shape)

    target = COMPACT_TARGETS.get((name, budget))
    t0 = time.perf_counter()
    try:
        compiled = once()
    except CraftError as e:  # a budget it does not fit: one line, not a traceback
        return CompactRow(name, budget, target_s=target, status=str(e))
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    s = compiled.shape
    return CompactRow(
        name,
        budget,
        shape=f"{s.n_layers}x{s.n_heads}x{s.d_model}",
        d_head=s.d_head,
        d_model=s.d_model,
        params=compiled.model.n_params(),
        max_bound=max(compiled.constants.bound.values(), default=0.0),
        first_s=first,
        compile_s=statistics.median(times),
        runs=len(times),
        target_s=target,
    )


def _child(args: list[str]) -> tuple[dict[str, Any] | None, str]:
    """This script with ``args`` in a child process: its last stdout line as JSON, or why not."""
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, __file__, *args],
            capture_output=True,
            text=True,
            timeout=CASE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return None, f"TIMEOUT after {CASE_TIMEOUT_S} s"
    if proc.returncode == 0:
        return json.loads(proc.stdout.strip().splitlines()[-1]), ""
    took = time.perf_counter() - started
    why = "killed (out of memory?)" if proc.returncode < 0 else proc.stderr.strip()[-200:]
    return None, f"exit {proc.returncode} after {took:.1f} s: {why}"


def run_isolated(case: Case, family: str, threads: int) -> Row:
    """:func:`measure` in a child process; a crash or timeout becomes the row's status."""
    data, status = _child(["--one", json.dumps(asdict(case)), family, str(threads)])
    if data is not None:
        return Row(**data)
    return Row(case.name, family, case.vocab, target_s=case.target, status=status)


def run_compact(name: str, budget: str, max_kl: float, threads: int) -> CompactRow:
    """:func:`measure_compact` in a child process; a crash or timeout becomes the status."""
    data, status = _child(["--one-compact", name, budget, str(max_kl), str(threads)])
    if data is not None:
        return CompactRow(**data)
    target = COMPACT_TARGETS.get((name, budget))
    return CompactRow(name, budget, target_s=target, status=status)


def cases(quick: bool) -> list[Case]:
    sizes = QUICK_SIZES if quick else SIZES
    out = [Case(name) for name in LIBRARY]
    out += [Case(f"{kind}-{v}", v, kind) for kind in ("bigram", "skip") for v in sizes]
    return out


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def machine(threads: int) -> dict[str, Any]:
    """Where the numbers were taken (timings on a busy machine are noisy)."""
    import platform

    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "torch_threads": threads,
    }


def print_table(rows: list[Row], info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    caption = ", ".join(f"{k} {v}" for k, v in info.items())
    table = Table(title="craft compile benchmark (median of runs; seconds, MB)", caption=caption)
    for col in ("spec", "family", "load s", "compile s", "runs", "peak MB", "RSS MB"):
        table.add_column(col, justify="left" if col in ("spec", "family") else "right")
    for col in ("d_model", "layers", "heads", "params", "target", "result"):
        table.add_column(col, justify="right")
    for r in rows:
        colour = {"PASS": "green", "FAIL": "red"}.get(r.verdict, "")
        table.add_row(
            r.spec,
            r.family,
            _fmt(r.load_s),
            _fmt(r.compile_s),
            str(r.runs),
            _fmt(r.peak_mb, ".1f"),
            _fmt(r.rss_mb, ".0f"),
            _fmt(r.d_model, "d"),
            _fmt(r.layers, "d"),
            _fmt(r.heads, "d"),
            _fmt(r.params, ",d"),
            "-" if r.target_s is None else f"< {r.target_s:g} s",
            f"[{colour}]{r.verdict}[/]" if colour else "",
        )
    console = Console(width=160)
    console.print(table)
    for r in rows:
        if r.status != "ok":
            console.print(f"[red]{r.spec} ({r.family}): {r.status}[/]")
        elif r.note:
            console.print(f"{r.spec} ({r.family}): {r.note}")


def print_compact(rows: list[CompactRow], max_kl: float) -> None:
    from rich.console import Console
    from rich.table import Table

    title = f"compact (attention-only) beside one-hot standard; --smallest at --max-kl {max_kl:g}"
    table = Table(title=title, caption="compile s: median after one warm-up (first s)")
    for col in ("spec", "budget", "shape", "d_head", "d_model", "params", "one-hot d_model"):
        table.add_column(col, justify="left" if col in ("spec", "budget", "shape") else "right")
    for col in ("one-hot params", "fewer", "max bound", "first s", "compile s", "runs"):
        table.add_column(col, justify="right")
    table.add_column("target", justify="right")
    table.add_column("result", justify="right")
    for r in rows:
        colour = {"PASS": "green", "FAIL": "red"}.get(r.verdict, "")
        ratio = r.onehot_params / r.params if r.params and r.onehot_params else None
        table.add_row(
            r.spec,
            r.budget,
            r.shape or "-",
            _fmt(r.d_head, "d"),
            _fmt(r.d_model, "d"),
            _fmt(r.params, ",d"),
            _fmt(r.onehot_d_model, "d"),
            _fmt(r.onehot_params, ",d"),
            "-" if ratio is None else f"{ratio:.1f}x",
            _fmt(r.max_bound, ".2e"),
            _fmt(r.first_s),
            _fmt(r.compile_s),
            str(r.runs),
            "-" if r.target_s is None else f"< {r.target_s:g} s",
            f"[{colour}]{r.verdict}[/]" if colour else "",
        )
    console = Console(width=160)
    console.print(table)
    for r in rows:
        if r.status != "ok":
            console.print(f"[red]{r.spec} ({r.budget}): {r.status}[/]")


def compact_rows(rows: list[Row], max_kl: float, threads: int, quiet: bool) -> list[CompactRow]:
    """Every compact case, each beside the standard one-hot row of its spec in ``rows``."""
    onehot = {r.spec: r for r in rows if r.family == "standard" and r.status == "ok"}
    out = []
    for name, budget in COMPACT:
        row = run_compact(name, budget, max_kl, threads)
        if name in onehot:
            row.onehot_d_model, row.onehot_params = onehot[name].d_model, onehot[name].params
        out.append(row)
        if not quiet:
            print(f"  {name} compact {budget}: {_fmt(row.compile_s)} s", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 5,000-token specs")
    parser.add_argument("--json", action="store_true", help="print JSON rows, not a table")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--max-kl", type=float, default=MAX_KL, help=f"compact --smallest budget ({MAX_KL:g})"
    )
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # CASE FAMILY THREADS
    parser.add_argument("--one-compact", nargs=4, help=argparse.SUPPRESS)  # NAME BUDGET KL THR
    args = parser.parse_args(argv)
    if args.one:
        row = measure(Case(**json.loads(args.one[0])), args.one[1], int(args.one[2]))
        print(json.dumps(asdict(row)))
        return 0
    if args.one_compact:
        name, budget, kl, threads = args.one_compact
        print(json.dumps(asdict(measure_compact(name, budget, float(kl), int(threads)))))
        return 0
    info, rows = machine(args.threads), []  # load average taken before the runs
    for case in cases(args.quick):
        for family in FAMILIES:
            rows.append(run_isolated(case, family, args.threads))
            if not args.json:
                print(f"  {case.name} {family}: {_fmt(rows[-1].compile_s)} s", file=sys.stderr)
    compact = compact_rows(rows, args.max_kl, args.threads, quiet=args.json)
    if args.json:
        out = {
            "machine": info,
            "rows": [asdict(r) | {"result": r.verdict} for r in rows],
            "compact": {
                "max_kl": args.max_kl,
                "rows": [asdict(r) | {"result": r.verdict} for r in compact],
            },
        }
        print(json.dumps(out, indent=1))
    else:
        print_table(rows, info)
        print_compact(compact, args.max_kl)
    return 0 if all(r.verdict != "FAIL" for r in [*rows, *compact]) else 1


if __name__ == "__main__":
    sys.exit(main())
