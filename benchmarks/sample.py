"""Sampler throughput: tokens per second of ``specs.sample`` on the toy language.

Run ``python benchmarks/sample.py`` (``--profile`` adds a cProfile of one call, ``--json``
prints one object). It times ``specs.sample(spec, 256, 128, seed)`` (the training batch)
``--repeats`` times with different seeds after one warm-up call, and reports the median.
Target (issue 5): at least 5 M tokens/s; the seed project's pure-Python generator made
0.15 M tokens/s on the 2-core development CPU. Training needs one batch a step, so the
sampler bounds a GPU run when a batch takes longer than a training step (a few ms).

Also timed: ``specs.truth`` on the same batch (used once per run for the evaluation set).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import specs  # noqa: E402

TARGET = 5e6  # tokens per second


def time_calls(fn, repeats: int) -> list[float]:
    """Seconds per call of ``fn(seed)`` for seeds 1..repeats (after a warm-up with seed 0)."""
    fn(0)
    out = []
    for seed in range(1, repeats + 1):
        start = time.perf_counter()
        fn(seed)
        out.append(time.perf_counter() - start)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(specs.library_path("toy_language")))
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--profile", action="store_true", help="cProfile one call")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    spec = specs.load_spec(args.spec)
    n_tokens = args.batch * args.length

    times = time_calls(lambda s: specs.sample(spec, args.batch, args.length, s), args.repeats)
    tokens, _ = specs.sample(spec, args.batch, args.length, 0)
    truth_times = time_calls(lambda s: specs.truth(spec, tokens), max(3, args.repeats // 3))
    median = statistics.median(times)
    result = {
        "spec": spec.name,
        "batch": args.batch,
        "length": args.length,
        "median_s": round(median, 5),
        "min_s": round(min(times), 5),
        "tokens_per_s": round(n_tokens / median),
        "target_tokens_per_s": TARGET,
        "meets_target": n_tokens / median >= TARGET,
        "truth_median_s": round(statistics.median(truth_times), 5),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        rate = result["tokens_per_s"] / 1e6
        print(
            f"specs.sample {spec.name} {args.batch} x {args.length}: median {median * 1e3:.1f} ms"
            f" over {args.repeats} runs = {rate:.2f} M tokens/s (target {TARGET / 1e6:.0f} M:"
            f" {'met' if result['meets_target'] else 'NOT met'})"
        )
        print(f"specs.truth on the same batch: {result['truth_median_s'] * 1e3:.1f} ms")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        specs.sample(spec, args.batch, args.length, 123)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
        print(buf.getvalue(), file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
