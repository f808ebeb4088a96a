"""verify.behaviour: per-position metrics, per-rule aggregation, and its failure modes."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

import specs
from craft.compiler import compile_spec
from craft.models import ModelConfig, Transformer
from specs.errors import CraftError
from tests.golden import GOLDEN
from tests.refusals import COIN
from verify.behaviour import Evaluation, RuleStats, evaluate, exact_region, kl_per_position

EXACT_KL = 1e-3  # the standard family must be this close to the spec on every rule
STAT_KEYS = {"kl", "ce", "entropy", "accuracy", "n", "max_kl"}



@functools.cache
def compiled(name: str, family: str = "standard"):
    spec = specs.load_library(name)
    return spec, compile_spec(spec, family).model


def constant_model(spec: specs.Spec, logits: list[float]) -> Transformer:
    """A zero-layer model whose logits are ``logits`` at every position."""
    cfg = ModelConfig(
        family="standard", n_layers=0, n_heads=1, d_model=1, d_head=1, d_mlp=0,
        n_vocab=len(spec.vocab) + 1, n_out=len(spec.vocab), n_ctx=spec.max_len + 1,
    )  # fmt: skip
    model = Transformer(cfg)
    with torch.no_grad():
        model.unembed.b_U.copy_(torch.tensor(logits))
    return model


@pytest.mark.parametrize("name", ["bigram", "skip_trigram", "induction", "toy_language"])
def test_standard_family_matches_every_rule(name: str) -> None:
    spec, model = compiled(name)
    ev = evaluate(model, spec, n_seqs=40, seed=1)
    assert ev.overall.n == 40 * (spec.max_len + 1)
    assert set(ev.rules) <= set(spec.rule_names())
    assert "start" in ev.rules and ev.rules["start"].n == 40
    for rule, stats in ev.rules.items():
        assert stats.max_kl < EXACT_KL, rule
        assert stats.accuracy == 1.0, rule
        assert stats.ce == pytest.approx(stats.entropy + stats.kl, abs=1e-9), rule
    bounds = model.meta["bounds"]
    assert all(ev.rules[r].max_kl <= bounds[r] for r in ev.rules)


@pytest.mark.parametrize("name", sorted({c.spec for c in GOLDEN}))
def test_golden_contexts_are_exact(name: str) -> None:
    """Every golden context of a spec in one batch, padded after the context (causal)."""
    spec, model = compiled(name)
    cases = [c for c in GOLDEN if c.spec == name]
    width = 1 + max(len(c.context) for c in cases)
    tokens = np.zeros((len(cases), width), dtype=np.int64)
    tokens[:, 0] = len(spec.vocab)
    for row, case in zip(tokens, cases, strict=True):
        row[1 : 1 + len(case.context)] = specs.encode(spec, case.context)
    kl, rule_ids = kl_per_position(model, spec, tokens)
    assert kl.shape == rule_ids.shape == tokens.shape
    region = exact_region(model, spec, tokens)
    for row, case in enumerate(cases):
        last = len(case.context)
        assert spec.rule_names()[rule_ids[row, last]] == case.rule, case.id
        if region is None or region[row, last]:
            assert kl[row, last] < EXACT_KL, case.id
        else:  # outside the model's stated conditions (a crossed bracket): said, not hidden
            assert model.meta["conditions"] and case.rule == "close-bracket", case.id


def test_overall_matches_hand_computation() -> None:
    spec = specs.parse_spec(COIN)
    model = constant_model(spec, [0.0, 1.0])  # q = softmax(0, 1): favours tails everywhere
    length = 4
    ev = evaluate(model, spec, n_seqs=3, length=length)

    log_q = [-math.log1p(math.e), 1 - math.log1p(math.e)]
    ce_start = -(0.5 * log_q[0] + 0.5 * log_q[1])
    ce_biased = -(0.7 * log_q[0] + 0.3 * log_q[1])
    h_start = math.log(2)
    h_biased = -(0.7 * math.log(0.7) + 0.3 * math.log(0.3))
    start, biased = ev.rules["start"], ev.rules["biased"]
    assert (start.n, biased.n) == (3, 3 * length)  # the last column counts too
    assert start.ce == pytest.approx(ce_start, abs=1e-12)
    assert start.entropy == pytest.approx(h_start, abs=1e-12)
    assert start.kl == pytest.approx(ce_start - h_start, abs=1e-12)
    assert start.accuracy == 1.0  # a tie in p: either maximiser counts as correct
    assert biased.kl == pytest.approx(ce_biased - h_biased, abs=1e-12)
    assert biased.max_kl == pytest.approx(biased.kl, abs=1e-12)
    assert biased.accuracy == 0.0  # tails is not the mode of (0.7, 0.3)
    n = 1 + length
    assert ev.overall.n == 3 * n
    assert ev.overall.kl == pytest.approx((start.kl + length * biased.kl) / n, abs=1e-12)
    assert ev.overall.ce == pytest.approx((ce_start + length * ce_biased) / n, abs=1e-12)
    assert ev.overall.accuracy == pytest.approx(1 / n)


def test_broken_model_gets_large_kl() -> None:
    spec, model = compiled("skip_trigram")
    broken = compile_spec(spec, "standard").model
    with torch.no_grad():
        broken.unembed.W_U.zero_()
    good = evaluate(model, spec, n_seqs=20)
    bad = evaluate(broken, spec, n_seqs=20)
    assert good.overall.kl < EXACT_KL
    assert bad.overall.kl > 0.1
    assert bad.rules["so-then"].kl > 1.0  # deterministic rule against a uniform model
    assert bad.overall.accuracy < 1.0


def test_evaluate_does_not_touch_the_callers_model() -> None:
    spec, model = compiled("bigram")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    evaluate(model, spec, n_seqs=5)
    after = model.state_dict()
    assert all(after[k].dtype == torch.float32 for k in before)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_given_tokens_and_sampled_tokens_agree() -> None:
    spec, model = compiled("induction")
    tokens, _ = specs.sample(spec, 10, 12, seed=3)
    given = evaluate(model, spec, tokens=torch.from_numpy(tokens), batch=3)
    sampled = evaluate(model, spec, n_seqs=10, length=12, seed=3)
    assert given == sampled
    kl, rule_ids = kl_per_position(model, spec, tokens)
    assert kl.shape == (10, 13)
    assert float(kl.max()) == pytest.approx(given.overall.max_kl, abs=1e-15)
    assert (rule_ids[:, 0] == spec.start_rule_id).all()


def test_to_json_schema() -> None:
    spec, model = compiled("bigram")
    data = evaluate(model, spec, n_seqs=5).to_json()
    assert set(data) == {"rules", "overall"}
    assert set(data["overall"]) == STAT_KEYS
    assert list(data["rules"]) == [r for r in spec.rule_names() if r in data["rules"]]
    for stats in [*data["rules"].values(), data["overall"]]:
        assert set(stats) == STAT_KEYS
        assert isinstance(stats["n"], int) and stats["n"] > 0
        assert all(isinstance(stats[k], float) for k in STAT_KEYS - {"n"})
        assert all(math.isfinite(stats[k]) for k in STAT_KEYS - {"n"})


def test_rules_that_never_fire_are_omitted() -> None:
    spec, model = compiled("skip_trigram")
    ev = evaluate(model, spec, n_seqs=2, length=1)  # start, then one bigram step
    assert set(ev.rules) <= {"start", "fallback"}
    assert isinstance(ev, Evaluation) and isinstance(ev.overall, RuleStats)


def test_errors_name_the_problem() -> None:
    spec, model = compiled("bigram")
    other = specs.load_library("induction")
    with pytest.raises(CraftError, match="predicts"):
        evaluate(model, other, n_seqs=2)
    with pytest.raises(CraftError, match="n_seqs"):
        evaluate(model, spec, n_seqs=0)
    with pytest.raises(CraftError, match="length"):
        evaluate(model, spec, n_seqs=2, length=spec.max_len + 1)
    with pytest.raises(CraftError, match="BOS"):
        kl_per_position(model, spec, np.zeros((1, 3), dtype=np.int64))


def test_tensor_evaluation_reports_where_exact():
    """A tensor model states conditions; eval splits them out and the bound holds there."""
    from craft.compiler import compile_spec

    spec = specs.parse_spec(TWO_ANCHORS, "two.yaml")  # two anchors change its output
    tensor = compile_spec(spec, "tensor", layers=1).model  # no room for the exact OR
    result = evaluate(tensor, spec, n_seqs=200, seed=4)
    assert result.where_exact is not None
    assert result.where_exact.overall.n < result.overall.n
    for name, stats in result.where_exact.rules.items():
        assert stats.max_kl <= tensor.meta["bounds"][name], name
    # outside the condition it is really inexact: two anchors double the readout
    twice, model = spec, tensor
    a, c = twice.vocab.index("a"), twice.vocab.index("c")
    bos = len(twice.vocab)
    two, _ = kl_per_position(model, twice, np.array([[bos, a, a, c]]))
    one, _ = kl_per_position(model, twice, np.array([[bos, a, c]]))
    assert two[0, -1] > 1e-3 and one[0, -1] <= model.meta["bounds"]["skip"]
    standard = evaluate(compile_spec(spec, "standard").model, spec, n_seqs=20)
    assert standard.where_exact is None and "where_exact" not in standard.to_json()
    exact = compile_spec(spec, "tensor").model  # layers to spare: the OR of the count
    assert exact.meta["conditions"] == [] and exact.cfg.n_layers == 3
    two, _ = kl_per_position(exact, twice, np.array([[bos, a, a, c]]))
    assert two[0, -1] <= exact.meta["bounds"]["skip"]


TWO_ANCHORS = """\
format: craft-spec/1
name: two-anchors
vocab: {K: [a], C: [c], A: [x, y, z]}
max_len: 6
start: {K: 1}
rules:
  - name: skip
    skip_bigram: {anchor: a, cue: c, window: [1, 3], next: {x: 0.5, y: 0.5}}
  - bigram:
      c: {x: 0.7, y: 0.1, z: 0.2}
      "*": {K: 0.3, C: 0.4, A: 0.3}
"""
