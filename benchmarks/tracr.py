"""Tracr's ``compile_rasp_to_model`` against ``craft tracr``'s fast path, in one run.

Run ``python benchmarks/tracr.py`` (``--quick`` for three programs and one repeat,
``--json`` for machine-readable output, ``--max-len`` to change the length).

For every ``make_*`` program of ``tracr.compiler.lib`` (the table in
``craft.tracr.library``, with Tracr's test vocabularies) it times:

* **tracr**: ``compile_rasp_to_model`` (graph, craft stages and Haiku assembly) the
  first time this program is compiled in the process (what a user sees: JAX compiles
  Haiku's initialisation for each new set of shapes), and, as ``warm``, the median of
  ``--tracr-repeats`` further compiles of the same program (JAX's caches hit; this is
  the floor of Haiku assembly, not a user-facing cost);
* **ours**: :func:`craft.tracr.from_rasp` (graph and craft stages, then torch weights
  directly, residual directions nothing reads pruned), the median of ``--repeats`` runs.

and reports layers, d_model and parameters of both models (Tracr's parameters are the
sizes of its Haiku params; ours are ``Transformer.n_params()``), the per-program time
ratio (cold Tracr / ours) and the median ratio over programs. Importing and
initialising JAX is paid once, by a warm-up compile of a program outside the table.
Target: median ratio >= 20, our models no larger.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow
# the ``tracr`` package: take the folder off and put the repository root on.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import torch  # noqa: E402

from craft.tracr import from_rasp  # noqa: E402
from craft.tracr.library import lib_programs  # noqa: E402

QUICK = ("reverse", "hist", "sort")


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_one(entry, max_len: int, repeats: int, tracr_repeats: int) -> dict:
    from tracr.compiler import compiling

    program = entry.build(max_len)
    vocab = set(entry.vocab)

    def theirs():
        return compiling.compile_rasp_to_model(
            program, vocab=vocab, max_seq_len=max_len, compiler_bos="BOS"
        )

    def ours():
        return from_rasp(program, vocab, max_len)

    start = time.perf_counter()
    assembled = theirs()
    t_cold = time.perf_counter() - start
    t_warm = _median_time(theirs, tracr_repeats) if tracr_repeats else float("nan")
    t_ours = _median_time(ours, repeats)
    model = ours()
    tracr_params = sum(int(w.size) for mod in assembled.params.values() for w in mod.values())
    cfg = model.model.cfg
    return {
        "program": entry.name,
        "tracr_s": t_cold,
        "tracr_warm_s": t_warm,
        "ours_s": t_ours,
        "ratio": t_cold / t_ours,
        "warm_ratio": t_warm / t_ours,
        "tracr_layers": assembled.model_config.num_layers,
        "ours_layers": cfg.n_layers,
        "tracr_d_model": len(assembled.residual_labels),
        "ours_d_model": cfg.d_model,
        "tracr_params": tracr_params,
        "ours_params": model.model.n_params(),
    }


def _warm_up(max_len: int) -> None:
    """Import and initialise JAX with a program outside the table (an identity Map)."""
    from tracr.compiler import compiling
    from tracr.rasp import rasp

    program = rasp.Map(lambda t: t, rasp.tokens).named("warm_up")
    compiling.compile_rasp_to_model(program, {"x", "y"}, max_len, compiler_bos="BOS")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three programs, one repeat")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--max-len", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tracr-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    logging.getLogger("absl").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    entries = [e for e in lib_programs() if not args.quick or e.name in QUICK]
    repeats, tracr_repeats = (2, 1) if args.quick else (args.repeats, args.tracr_repeats)
    _warm_up(args.max_len)
    rows = [bench_one(e, args.max_len, repeats, tracr_repeats) for e in entries]
    summary = {
        "max_len": args.max_len,
        "median_ratio": statistics.median(r["ratio"] for r in rows),
        "median_warm_ratio": statistics.median(r["warm_ratio"] for r in rows),
        "ours_never_larger": all(
            r["ours_params"] <= r["tracr_params"]
            and r["ours_layers"] <= r["tracr_layers"]
            and r["ours_d_model"] <= r["tracr_d_model"]
            for r in rows
        ),
    }
    if args.json:
        print(json.dumps({"rows": rows, **summary}, indent=2))
        return 0
    head = (
        f"{'program':18s} {'tracr s':>8s} {'warm s':>7s} {'ours s':>8s} {'ratio':>6s} "
        f"{'layers':>7s} {'d_model':>9s} {'params (tracr / ours)':>24s}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['program']:18s} {r['tracr_s']:8.3f} {r['tracr_warm_s']:7.3f} "
            f"{r['ours_s']:8.4f} {r['ratio']:6.0f} "
            f"{r['tracr_layers']:>3d}/{r['ours_layers']:<3d} "
            f"{r['tracr_d_model']:>4d}/{r['ours_d_model']:<4d} "
            f"{r['tracr_params']:>11d} / {r['ours_params']:<10d}"
        )
    print(
        f"median time ratio {summary['median_ratio']:.0f}x (target >= 20x; against warm "
        f"Tracr {summary['median_warm_ratio']:.1f}x); "
        f"ours never larger: {summary['ours_never_larger']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
