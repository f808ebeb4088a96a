"""Weight-circuit comparison at a 20,000-token vocabulary, in factored form.

Run ``python benchmarks/diff.py [--vocab 20000] [--json]``. For each family it builds
two random 2-layer models (4 heads x d_head 16, d_model 64, learned positions over 129
places) and times :func:`verify.circuits.compare_circuits` on every circuit: the
direct path ``[V, V-1]`` and per head the token QK ``[V, V]``, position QK and OV
``[V, V-1]``. It then compares the first model with a gauge-transformed copy of itself
(every similarity must be 1). Reported: seconds, the peak of numpy allocations during
the comparison (tracemalloc) and the process's peak resident memory. Targets: < 30 s and
< 4 GB; one dense 20,000 x 20,000 float64 circuit alone would take 3.2 GB.

Then, end to end, :func:`verify.diff.diff` of the two standard models on a synthetic
spec over the same vocabulary (a random bigram table, ``benchmarks/compile.py``):
behaviour of both, their agreement, role scores, composition and the direct path on
``--seqs`` sequences of ``--length`` tokens (random models have no crafted components,
so no matching, ablation or patching: those cost a few circuit comparisons and forward
passes per component, timed above and in the toy-language diff). Parsing the spec is
timed separately.
BLAS runs on one thread unless ``OMP_NUM_THREADS`` is set.
"""

from __future__ import annotations

import os

# One BLAS thread unless told otherwise: on a busy 2-core machine OpenBLAS's and torch's
# thread pools spin against each other (measured 5-10x slower). Set before numpy loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from craft.models import ModelConfig, Transformer  # noqa: E402
from verify.circuits import compare_circuits  # noqa: E402
from verify.gauge import apply_gauge  # noqa: E402


def random_model(family: str, vocab: int, seed: int) -> Transformer:
    cfg = ModelConfig(family, 2, 4, 64, 16, 0, vocab + 1, vocab, 129)
    torch.manual_seed(seed)
    model = Transformer(cfg).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.1)
    return model.eval()


def timed(a: Transformer, b: Transformer, heads=None) -> tuple[dict, float, float]:
    tracemalloc.start()
    start = time.perf_counter()
    sims = compare_circuits(a, b, heads=heads)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return sims, seconds, peak


def run(family: str, vocab: int) -> dict:
    a, b = random_model(family, vocab, 0), random_model(family, vocab, 1)
    sims, seconds, peak = timed(a, b)
    gauged = apply_gauge(a, np.random.default_rng(0))
    perms = gauged.meta["gauge"]["head_perm"]
    heads = {(lay, old): (lay, new) for lay, p in enumerate(perms) for new, old in enumerate(p)}
    self_sims, self_seconds, self_peak = timed(a, gauged, heads)
    return {
        "family": family,
        "vocab": vocab,
        "circuits": len(sims),
        "seconds": round(seconds, 2),
        "numpy_peak_mb": round(peak / 1e6, 1),
        "max_abs_similarity_unrelated": round(max(abs(s) for s in sims.values()), 4),
        "gauged_copy_seconds": round(self_seconds, 2),
        "gauged_copy_numpy_peak_mb": round(self_peak / 1e6, 1),
        "gauged_copy_min_similarity": min(self_sims.values()),
    }


def end_to_end(vocab: int, seqs: int, length: int) -> dict:
    from compile import synthetic_spec  # benchmarks/compile.py, beside this file

    from specs.load import parse_spec
    from verify.diff import diff

    start = time.perf_counter()
    spec = parse_spec(synthetic_spec("bigram", vocab, max_len=length))
    parse_s = time.perf_counter() - start
    a, b = random_model("standard", vocab, 0), random_model("standard", vocab, 1)
    start = time.perf_counter()
    d = diff(a, b, spec, n_seqs=seqs)
    return {
        "vocab": vocab,
        "seqs": seqs,
        "length": d.length,
        "parse_spec_seconds": round(parse_s, 2),
        "diff_seconds": round(time.perf_counter() - start, 2),
        "agreement_kl": round(d.agreement["overall"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=20_000)
    parser.add_argument("--families", default="standard,tensor")
    parser.add_argument("--seqs", type=int, default=40, help="end-to-end diff: sequences")
    parser.add_argument("--length", type=int, default=64, help="end-to-end diff: tokens each")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [run(f, args.vocab) for f in args.families.split(",")]
    whole = end_to_end(args.vocab, args.seqs, args.length)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux
    out = {
        "results": rows,
        "end_to_end": whole,
        "process_peak_rss_gb": round(rss_gb, 2),
        "blas_threads": os.environ["OMP_NUM_THREADS"],
        "targets": "<30 s, <4 GB",
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for r in rows:
        print(
            f"{r['family']:8s} V={r['vocab']}: {r['circuits']} circuits in {r['seconds']} s "
            f"(numpy peak {r['numpy_peak_mb']} MB); gauged copy: {r['gauged_copy_seconds']} s, "
            f"min similarity {r['gauged_copy_min_similarity']:.12f}"
        )
    w = whole
    print(
        f"diff() end to end, V={w['vocab']}: {w['seqs']} sequences x {w['length']} tokens in "
        f"{w['diff_seconds']} s (spec parsed in {w['parse_spec_seconds']} s)"
    )
    print(f"process peak RSS {out['process_peak_rss_gb']} GB (targets: < 30 s, < 4 GB)")


if __name__ == "__main__":
    main()
