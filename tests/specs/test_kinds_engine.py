"""Engine against oracle with every rule kind (bracket and copy included), the sampler's
statistics on the specs of the newest kinds, their targeted and near-miss contexts (the
library fuzz test, tests/specs/test_spec_fuzz.py, mutates them with the rest)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import specs
from specs import CraftWarning, nearmiss, sample, truth
from specs.kinds import kind_of
from specs.sample import sample_bytes
from tests.specs.test_spec_sample import _reference_sample

NEW_KIND_SPECS = ("previous_token", "toy_language_brackets")
NEW_SPECS = {name: specs.load_library(name) for name in NEW_KIND_SPECS}
PROPERTY = settings(
    derandomize=True,
    database=None,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _rule(draw: Any, kind: str, tokens: list[str], max_len: int) -> dict:
    """The YAML of one random rule of ``kind`` over tokens ``t0..`` (categories A, B)."""
    names = st.sampled_from([*tokens, "A", "B", "*"])
    sel = st.lists(names, min_size=1, max_size=3)
    dist = st.sampled_from([{tokens[0]: 1}, {"A": "1/3", "B": "2/3"}, {"*": 1}, {tokens[-1]: 1}])
    if kind == "bigram":
        return {"bigram": {k: draw(dist) for k in draw(sel)}}
    if kind == "trigram":
        return {"trigram": {"after": [draw(sel), draw(sel)], "next": draw(dist)}}
    if kind == "skip_bigram":
        lo = draw(st.integers(1, max_len - 1))
        hi = draw(st.integers(lo, max_len - 1))
        return {
            "skip_bigram": {
                "anchor": draw(sel),
                "cue": draw(sel),
                "window": [lo, hi],
                "next": draw(dist),
            }
        }
    if kind == "induction":
        return {"induction": {"on": draw(sel)}}
    if kind == "copy":
        return {"copy": {"cue": draw(sel), "offset": draw(st.integers(1, max_len - 1))}}
    order = draw(st.permutations(tokens))
    n_pairs = draw(st.integers(1, (len(tokens) - 1) // 2))
    pairs = {order[2 * i]: order[2 * i + 1] for i in range(n_pairs)}
    cue = draw(st.lists(st.sampled_from(order[2 * n_pairs :]), min_size=1, max_size=2))
    return {"bracket": {"pairs": pairs, "cue": cue}}


@st.composite
def kind_specs(draw: Any) -> specs.Spec:
    """A random spec: up to five rules of any kind, most often a bracket and a copy rule
    among them, then a fallback bigram."""
    n_tok = draw(st.integers(3, 8))
    tokens = [f"t{i}" for i in range(n_tok)]
    split = draw(st.integers(1, n_tok - 1))
    max_len = draw(st.integers(2, 14))
    kinds = st.sampled_from(["bigram", "trigram", "skip_bigram", "induction", "bracket", "copy"])
    rules = [_rule(draw, draw(kinds), tokens, max_len) for _ in range(draw(st.integers(0, 5)))]
    for kind, chance in (("bracket", 0.7), ("copy", 0.5)):  # the new kinds, most of the time
        if draw(st.floats(0, 1)) < chance:
            rules.insert(draw(st.integers(0, len(rules))), _rule(draw, kind, tokens, max_len))
    data = {
        "format": "craft-spec/1",
        "name": "random",
        "vocab": {"A": tokens[:split], "B": tokens[split:]},
        "max_len": max_len,
        "start": {"*": 1},
        "rules": [*rules, {"bigram": {"*": {"*": 1}}}],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CraftWarning)
        return specs.parse_spec(data, "random.yaml")


def _assert_truth_is_oracle(spec: specs.Spec, tokens: np.ndarray) -> None:
    probs, rule_ids = truth(spec, tokens)
    for b in range(len(tokens)):
        for t in range(tokens.shape[1]):
            want, rule_id = specs.next_dist(spec, [int(x) for x in tokens[b, 1 : t + 1]])
            assert rule_ids[b, t] == rule_id, (b, t)
            assert np.array_equal(probs[b, t], want), (b, t)


def _bracket_heavy(spec: specs.Spec, rng: np.random.Generator, batch: int) -> np.ndarray:
    """Rows drawn mostly from the bracket rules' openers, closers and cues (deep, crossed
    and unmatched brackets are rare among uniform tokens)."""
    hot = sorted(
        set().union(
            *(r.openers | r.closers | r.cue for r in spec.rules if kind_of(r).key == "bracket")
        )
    )
    pool = np.array(hot or range(len(spec.vocab)))
    rows = pool[rng.integers(0, len(pool), size=(batch, 1 + spec.max_len))]
    cold = rng.random(rows.shape) < 0.2
    rows[cold] = rng.integers(0, len(spec.vocab), size=int(cold.sum()))
    rows[:, 0] = len(spec.vocab)
    return rows


@PROPERTY
@given(kind_specs(), st.integers(0, 2**31))
def test_engine_equals_oracle_with_every_kind(spec: specs.Spec, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sampled, _ = sample(spec, 4, spec.max_len, seed=seed)
    uniform = rng.integers(0, len(spec.vocab), size=(4, 1 + spec.max_len))
    uniform[:, 0] = len(spec.vocab)
    heavy = _bracket_heavy(spec, rng, 4)
    _assert_truth_is_oracle(spec, np.concatenate([sampled, uniform, heavy]))


@settings(PROPERTY, max_examples=25)
@given(kind_specs(), st.integers(0, 2**31))
def test_sample_equals_reference_with_every_kind(spec: specs.Spec, seed: int) -> None:
    got = sample(spec, 3, spec.max_len, seed=seed)
    want = _reference_sample(spec, 3, spec.max_len, seed=seed)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


@pytest.mark.parametrize("name", NEW_KIND_SPECS)
def test_pending_truth_equals_oracle_on_planted_boundaries(name: str) -> None:
    """Deep, crossed and unmatched brackets, copies at every offset edge, planted at
    random positions of full-length sequences: the engine agrees everywhere."""
    spec, rng = NEW_SPECS[name], np.random.default_rng(11)
    planted, _ = nearmiss.planted(spec, rng, 12, lambda r: nearmiss.boundary_endings(spec, r))
    tokens = np.concatenate([np.full((12, 1), len(spec.vocab)), planted], axis=1)
    _assert_truth_is_oracle(spec, tokens[:, : 1 + min(spec.max_len, 48)])


@pytest.mark.parametrize("name", NEW_KIND_SPECS)
def test_pending_sampler_matches_expected_counts(name: str) -> None:
    """Per rule, each next token's count is within 5 sigma of the summed exact
    probabilities; deterministic rules (bracket, copy) give exactly their token."""
    spec = NEW_SPECS[name]
    tokens, rule_ids = sample(spec, 2048, min(spec.max_len, 64), seed=3)
    probs, truth_ids = truth(spec, tokens)
    assert np.array_equal(truth_ids[:, :-1], rule_ids)
    probs, following = probs[:, :-1], tokens[:, 1:]
    for rule_id in np.unique(rule_ids):
        fired = rule_ids == rule_id
        p = probs[fired]
        observed = np.bincount(following[fired], minlength=len(spec.vocab))
        expected, var = p.sum(0), (p * (1 - p)).sum(0)
        assert observed[expected == 0].sum() == 0
        z = np.abs(observed - expected) / np.sqrt(np.maximum(var, 1e-12))
        assert (z < 5).all(), (spec.rule_names()[rule_id], z.max())
    new = [i for i, r in enumerate(spec.rules) if kind_of(r).key in ("bracket", "copy")]
    assert all((rule_ids == i).sum() > 200 for i in new)


def test_sample_bytes_counts_the_bracket_stacks() -> None:
    toy = NEW_SPECS["toy_language_brackets"]
    bracket = specs.rule_index(toy, "close-bracket")
    without = specs.Spec(
        toy.name, toy.vocab, toy.max_len, toy.start, toy.rules[:bracket] + toy.rules[bracket + 1 :]
    )
    extra = sample_bytes(toy, 1000, 128) - sample_bytes(without, 1000, 128)
    assert extra - 64 * len(toy.vocab) == 8 * 1000 * (128 + 4)


def _stack_facts(spec: specs.Spec, context: tuple[int, ...]) -> tuple[int, int]:
    """(deepest stack, closers ignored) over the context, for "( [ ) ]"-like shapes."""
    rule = spec.rules[specs.rule_index(spec, "close-bracket")]
    stack, deepest, ignored = [], 0, 0
    for token in context:
        if token in rule.closer_of:
            stack.append(rule.closer_of[token])
        elif token in rule.closers:
            if stack and stack[-1] == token:
                stack.pop()
            else:
                ignored += 1
        deepest = max(deepest, len(stack))
    return deepest, ignored


def test_bracket_targeted_contexts_are_deep_crossed_and_unmatched() -> None:
    spec = NEW_SPECS["toy_language_brackets"]
    bracket = specs.rule_index(spec, "close-bracket")
    contexts = specs.contexts_for_rule(spec, bracket, np.random.default_rng(2), 120, max_prefix=4)
    facts = [_stack_facts(spec, c) for c in contexts]
    assert all(specs.next_dist_exact(spec, c)[1] == bracket for c in contexts)
    assert max(d for d, _ in facts) >= 8
    assert sum(i > 0 for _, i in facts) >= 10  # crossed or unmatched closers, ignored
    assert all(len(c) <= spec.max_len for c in contexts)


@pytest.mark.parametrize("name", NEW_KIND_SPECS)
def test_near_endings_fall_on_both_sides(name: str) -> None:
    """Each new-kind rule's near endings, as whole contexts: some fire it, some do not;
    its overlay makes its condition hold at the end of every other rule's ending."""
    spec, rng = NEW_SPECS[name], np.random.default_rng(5)
    for rule_id, rule in enumerate(spec.rules):
        kind = kind_of(rule)
        if kind.key not in ("bracket", "copy"):
            continue
        fired = [
            specs.next_dist_exact(spec, e)[1] == rule_id
            for e in nearmiss.near_endings(spec, rule, rng)
        ]
        assert any(fired) and not all(fired), fired
        for other in spec.rules:
            base = nearmiss.ending(spec, other, rng)
            both = nearmiss.overlay(spec, rule, base, rng)
            if both is not None:
                x = (len(spec.vocab), *both)
                assert kind.exact(rule, x, len(spec.vocab)) is not None
                assert both[-1] == base[-1]
