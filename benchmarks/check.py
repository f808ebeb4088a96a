"""Throughput of `craft check`, its length coverage, and the defects it finds.

Run ``python benchmarks/check.py`` (``--quick`` skips part 3's full default checks).
Part 1 checks claims on a 2-layer, 4-head, d_model-64 standard model (random weights,
the toy language's vocabulary and context) and reports distinct contexts checked per
second (target: >= 500/s on this CPU; window_only counts pairs, both sides in one
forward pass) by Hypothesis' phases alone, by the sweep that follows them, and by the
whole check, and the lengths the contexts covered (contexts per quarter of 1..128).
Part 2 plants the four defects of the test suite into the crafted toy-language model,
plus a false window claim (induction copies from further back than 3 tokens), and
reports the examples each search needed and the minimal counterexample it returned.
Part 3 runs the WHOLE default check (every default claim) of the crafted toy-language
model in both families (false alarms: must be 0; wall time: must stay under 60 s) and
on each unplanted defect of ``tests/defects.py``, reporting which claims fail and
whether the first failing rule claim's counterexample has a wrong output by the
spec's exact ground truth.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

import specs
from craft.compiler import compile_spec
from craft.models import ModelConfig, Transformer, component_records
from craft.models.layout import Direction
from specs.truth import encode
from verify import batched
from verify.check import SWEEP_PER_EXAMPLE, check_all, check_claim
from verify.claims import Claim, HeadRole, RuleHolds, WindowOnly
from verify.defaults import default_claims

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/defects.py
from tests.defects import DEFECTS as UNPLANTED  # noqa: E402
from tests.defects import broken  # noqa: E402

SPEC = specs.load_spec(specs.library_path("toy_language"))


def small_model() -> Transformer:
    cfg = ModelConfig(
        family="standard",
        n_layers=2,
        n_heads=4,
        d_model=64,
        d_head=16,
        d_mlp=0,
        n_vocab=len(SPEC.vocab) + 1,
        n_out=len(SPEC.vocab),
        n_ctx=SPEC.max_len + 1,
    )
    torch.manual_seed(0)
    model = Transformer(cfg)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return model.eval()


def throughput(examples: int) -> list[tuple]:
    """Per claim: Hypothesis alone (``sweep=0``), then the full check (Hypothesis, then
    the sweep of ``SWEEP_PER_EXAMPLE * examples`` bulk-drawn contexts)."""
    model = small_model()
    claims = [  # loose thresholds: the search runs to the end instead of stopping early
        Claim("fallback-kl", RuleHolds(rule="fallback", max_kl=1e9)),
        Claim("induction-kl", RuleHolds(rule="noun-induction", max_kl=1e9)),
        Claim("window", WindowOnly(rule="beach-big", window=9, max_kl=1e9)),
        Claim("prev-role", HeadRole(head="0.0", role="previous-token", min_score=0.0)),
    ]
    rows = []
    for c in claims:
        runs = []
        for sweep in (0, None):
            t = time.perf_counter()
            r = check_claim(model, SPEC, c, examples=examples, sweep=sweep)
            runs.append((r, time.perf_counter() - t))
        (h, th), (full, tf) = runs
        # the sweep's rate, from two runs' difference (none when too small to time)
        swept = (full.distinct - h.distinct) / (tf - th) if tf - th > 0.05 else float("nan")
        quarters = " ".join(str(n) for _, _, n in full.coverage.quarters)
        lo, hi = full.coverage.lengths
        rows.append(
            (c.name, h.distinct, h.distinct / th, swept, full.distinct, full.distinct / tf,
             f"{lo}-{hi}: {quarters}")
        )  # fmt: skip
    return rows


def _edit_window(model):
    attn, lay = model.blocks[0].attn, model.layout
    h = next(r.head for r in component_records(model) if r.name == "skip0")
    for t in range(10, SPEC.max_len + 1):
        j = int(attn.W_Q[h][lay.index(Direction("pos", t))].abs().argmax())
        attn.W_K[h][lay.index(Direction("pos", t - 9)), j] = 0


def _edit_neighbour(model):
    attn, lay = model.blocks[1].attn, model.layout
    for tok in SPEC.vocab.tokens:
        prev, cur = lay.index(Direction("prev", tok)), lay.index(Direction("tok", tok))
        attn.W_K[0][cur], attn.W_K[0][prev] = attn.W_K[0][prev].clone(), 0


def _edit_row(model):
    model.unembed.W_U[model.layout.index(Direction("tok", "alice"))] = 0


def _edit_rare(model):
    lay, mlp = model.layout, model.blocks[0].mlp
    w_in = torch.zeros(mlp.W_in.shape[0], 1)
    for d, v in (
        (Direction("prev", "alice"), 1),
        (Direction("tok", "alice"), 1),
        (Direction("one"), -1),
    ):
        w_in[lay.index(d)] = v
    w_out = torch.zeros(1, mlp.W_out.shape[1])
    w_out[0, lay.index(Direction("fire", "the-alice"))] = 1
    mlp.W_in = torch.nn.Parameter(torch.cat([mlp.W_in, w_in], 1))
    mlp.W_out = torch.nn.Parameter(torch.cat([mlp.W_out, w_out], 0))


DEFECTS = [
    ("window one token short", _edit_window, RuleHolds(rule="beach-big", max_kl=1e-3)),
    ("induction copies the wrong neighbour", _edit_neighbour, RuleHolds(rule="noun-induction")),
    ("one bigram row ignored", _edit_row, RuleHolds(rule="noun-bigrams", max_kl=1e-3)),
    ("wrong on one rare context", _edit_rare, RuleHolds(rule="noun-induction", max_kl=1e-3)),
    (
        "claim: induction reads 3 back (window_only)",
        None,
        WindowOnly(rule="noun-induction", window=3),
    ),
]


def defects(examples: int) -> list[tuple[str, bool, int | None, int, str]]:
    rows = []
    for name, edit, body in DEFECTS:
        model = compile_spec(SPEC, "standard").model
        with torch.no_grad():
            if edit is not None:
                edit(model)
        r = check_claim(model, SPEC, Claim(name, body), examples=examples)
        rows.append((name, not r.passed, r.found_after, r.scored, " ".join(r.counterexample or [])))
    return rows


def whole_checks(console: Console) -> None:
    """Part 3: every default claim, on the correct models and on each unplanted defect."""
    table = Table(title="the whole default check of the crafted toy language (200 examples)")
    for col in ("model", "claims", "failed", "seconds", "first failure", "output wrong there"):
        table.add_column(col)
    models = [(f"correct ({f})", compile_spec(SPEC, f).model) for f in ("standard", "tensor")]
    models += [(d.name, broken(compile_spec(SPEC, "standard").model, d)) for d in UNPLANTED]
    for name, model in models:
        claims = default_claims(model, SPEC)
        t = time.perf_counter()
        results = check_all(model, SPEC, claims)
        took = time.perf_counter() - t
        failed = [r for r in results if not r.passed]
        first = next((r for r in failed if r.kind == "rule_holds"), failed[0] if failed else None)
        wrong = ""
        if first is not None and first.counterexample is not None:
            ctx = list(encode(SPEC, first.counterexample))
            p, _ = batched.truth_at(SPEC, [ctx])
            kl = float(batched.kl(p, batched.model_logprobs(model, SPEC, [ctx]))[0])
            wrong = f"{'yes' if kl > first.threshold else 'NO'} (kl {kl:.3g})"
            shown = " ".join(first.counterexample) or "(BOS only)"
            if len(shown) > 40:
                shown = f"... {' '.join(first.counterexample[-3:])} ({len(ctx)} tokens)"
            first_text = f"{first.name}: {shown}"
        else:
            first_text = ""
        table.add_row(name, str(len(results)), str(len(failed)), f"{took:.1f}", first_text, wrong)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="skip part 3")
    args = parser.parse_args()
    torch.set_num_threads(1)
    console = Console(width=120)
    table = Table(
        title="distinct contexts checked per second: 2 layers x 4 heads, d_model 64 "
        "(target >= 500/s)"
    )
    for col in (
        "claim",
        "Hypothesis: distinct",
        "distinct/s",
        "sweep: distinct/s",
        "whole check: distinct",
        "distinct/s",
        "target",
        "lengths: per quarter",
    ):
        table.add_column(col)
    for name, h, h_rate, sweep_rate, n, rate, cover in throughput(args.examples):
        ok = "PASS" if rate >= 500 else "FAIL"
        row = (name, str(h), f"{h_rate:.0f}", f"{sweep_rate:.0f}", str(n), f"{rate:.0f}", ok)
        table.add_row(*row, cover)
    console.print(table)
    console.print(
        "distinct: contexts (window_only: pairs) the model ran on. Hypothesis proposes "
        f"more ({args.examples} examples' worth), but its target and shrink phases mostly "
        "re-propose a batch with one item changed, and repeats are scored once. The sweep "
        f"then checks {SWEEP_PER_EXAMPLE} x examples contexts drawn in bulk with numpy."
    )
    table = Table(title="planted defects in the crafted toy-language model")
    for col in ("defect", "found", "examples to find", "with shrinking", "minimal counterexample"):
        table.add_column(col)
    for name, found, first, total, ctx in defects(args.examples):
        table.add_row(name, "yes" if found else "NO", str(first), str(total), ctx)
    console.print(table)
    if not args.quick:
        whole_checks(console)


if __name__ == "__main__":
    main()
