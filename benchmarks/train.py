"""Training benchmark: the default ``craft train`` config on the toy language.

Run ``python benchmarks/train.py`` (``--steps``, ``--device``, ``--family``, ``--json``).
It trains with the published setup (2 layers x 4 heads, d_model 64, attention-only,
batch 256, sequence length 128, AdamW lr 3e-3, 5000 steps, warm-up then cosine; tensor
family by default, as published), then measures the per-rule excess loss on a fresh
held-out sample of ``--eval-seqs`` sequences and compares the rule groups with the
published trained result (BACKGROUND.md; nats of excess loss over the true entropy):

=============== ======================================================= =========
group           toy-language rules                                      published
=============== ======================================================= =========
noun bigram     noun-bigrams                                            0.105
skip-bigram     beach-big, office-small, garden-old, lake-new           0.074
token trigram   the-alice ... to-school (eight rules)                   0.095
induction       noun-induction                                          0.12
=============== ======================================================= =========

A group's figure pools its rules' positions. Reported: steps, wall time, seconds per
step, the device, and each group against the published figure. Measured: the standard
family (``craft train``'s default) takes 4873 s for 5000 steps on the 2-core development
CPU (``--family standard --device cpu --threads 2``) and 76 s on an H100; the tensor
family about 2 s per step on that CPU and 137 s on the H100. Use ``--steps 300`` for a
smoke run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import specs  # noqa: E402
from craft.train import TrainConfig, excess_by_rule, make_eval_set, train  # noqa: E402
from craft.train.metrics import pooled, rule_counts  # noqa: E402

TRIGRAMS = ["the-alice", "the-bob", "the-carol", "the-dave"]
TRIGRAMS += ["in-park", "on-home", "at-store", "to-school"]
GROUPS = {
    "noun bigram": (["noun-bigrams"], 0.105),
    "skip-bigram": (["beach-big", "office-small", "garden-old", "lake-new"], 0.074),
    "token trigram": (TRIGRAMS, 0.095),
    "induction": (["noun-induction"], 0.12),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(specs.library_path("toy_language")))
    parser.add_argument("--family", choices=("standard", "tensor"), default="tensor")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--eval-seqs", type=int, default=2048, help="held-out sequences")
    parser.add_argument("-o", "--output", help="also write the trained model here")
    parser.add_argument("--log", help="JSONL training log")
    parser.add_argument(
        "--save-every", type=int, default=0, help="checkpoint every N steps (needs -o)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = specs.load_spec(args.spec)
    cfg = TrainConfig(
        family=args.family,
        steps=args.steps,
        device=args.device,
        seed=args.seed,
        save_every=args.save_every,
    )

    def show(rec: dict) -> None:
        if not args.json:
            loss = "-" if rec["loss"] is None else f"{rec['loss']:.4f}"
            print(
                f"step {rec['step']:>5}  loss {loss}  overall excess "
                f"{rec['excess']['overall']:.4f}  worst {rec['worst_rule']}  {rec['wall_s']:.0f} s",
                flush=True,
            )

    start = time.perf_counter()
    result = train(spec, cfg, output=args.output, log_path=args.log, on_record=show)
    wall = time.perf_counter() - start
    data = make_eval_set(spec, args.eval_seqs, result.config.length, seed=10_000 + args.seed)
    excess = excess_by_rule(result.model, data)
    counts = rule_counts(data)
    groups = {}
    for group, (rules, published) in GROUPS.items():
        ours = pooled(excess, counts, rules)
        n = sum(counts.get(r, 0) for r in rules)
        groups[group] = {
            "ours": ours,
            "published": published,
            "positions": n,
            "met": ours <= published,
        }
    summary = {
        "family": args.family,
        "steps": args.steps,
        "wall_s": round(wall, 1),
        "s_per_step": round(wall / args.steps, 4),
        "device": result.device,
        "params": result.model.n_params(),
        "groups": groups,
        "overall_excess": excess["overall"],
        "per_rule": excess,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"\n{args.family} family, {summary['params']} parameters: {args.steps} steps in "
        f"{wall:.1f} s on {result.device} ({summary['s_per_step'] * 1e3:.1f} ms/step)"
    )
    print(f"{'group':<15}{'ours':>9}{'published':>11}{'positions':>11}  met")
    for group, g in groups.items():
        print(
            f"{group:<15}{g['ours']:>9.4f}{g['published']:>11.3f}{g['positions']:>11}  "
            f"{'yes' if g['met'] else 'no'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
