"""The ground truth: rule semantics, exact vs. batched agreement, input checks."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import specs
from specs import CraftError, next_dist, next_dist_exact, parse_spec, truth

LIBRARY = {name: specs.load_library(name) for name in specs.LIBRARY}

# Rules whose conditions use "*" so that BOS-related edge cases show.
EDGES = parse_spec(
    """
format: craft-spec/1
name: edges
vocab: {T: [a, b, c, d]}
max_len: 12
start: {a: 1}
rules:
  - name: any-then-b
    trigram: {after: ["*", b], next: {a: 1}}
  - name: any-before-c
    skip_bigram: {anchor: "*", cue: c, window: [1, 3], next: {b: 1}}
  - name: copy
    induction: {on: [a, d]}
  - name: rest
    bigram: {"*": {T: 1}}
""",
    "edges.yaml",
)


def _ask(spec: specs.Spec, names: str) -> tuple[str, tuple[Fraction, ...]]:
    dist, rule_id = next_dist_exact(spec, specs.encode(spec, names.split()))
    return spec.rule_names()[rule_id], dist.probs


def _onehot(spec: specs.Spec, token: str) -> tuple[Fraction, ...]:
    return tuple(Fraction(int(t == token)) for t in spec.vocab.tokens)


@pytest.mark.parametrize(
    ("context", "rule", "next_token"),
    [
        ("b", "rest", None),  # t = 1: x[t-1] is BOS, which no trigram matches, not even "*"
        ("a b", "any-then-b", "a"),
        ("c", "rest", None),  # BOS is never an anchor: s >= 1
        ("a c", "any-before-c", "b"),  # distance 1
        ("a a a c", "any-before-c", "b"),  # distance 3 (hi)
        ("a", "rest", None),  # the current occurrence does not count: s < t
        ("a a", "copy", "a"),  # x[s*+1] may be the current token itself
        ("a b a d a", "copy", "b"),  # earliest occurrence wins (later one was followed by d)
        ("d c d", "copy", "c"),
        ("b d b", "any-then-b", "a"),  # trigram before induction (b is not in `on`)
    ],
)
def test_rule_semantics_at_the_edges(context: str, rule: str, next_token: str | None) -> None:
    fired, probs = _ask(EDGES, context)
    assert fired == rule
    if next_token is None:
        assert probs == (Fraction(1, 4),) * 4
    else:
        assert probs == _onehot(EDGES, next_token)


def test_skip_window_counts_every_anchor_position() -> None:
    """Anchor anywhere in [t-hi, t-lo] is enough, even if others are outside."""
    spec = LIBRARY["skip_trigram"]
    assert _ask(spec, "red um um um um um um red um ask")[0] == "red-ask"  # s=8, t=10
    assert _ask(spec, "red um um um um um um um ask")[0] == "fallback"


def test_empty_context_is_the_start_distribution() -> None:
    for spec in LIBRARY.values():
        dist, rule_id = next_dist_exact(spec, [])
        assert dist == spec.start and rule_id == spec.start_rule_id
        assert spec.rule_names()[rule_id] == specs.START_RULE


def _random_tokens(spec: specs.Spec, rng: np.random.Generator, batch: int) -> np.ndarray:
    """Half sampled from the spec, half uniform tokens (contexts the spec never makes)."""
    length = min(spec.max_len, 40)
    sampled, _ = specs.sample(spec, batch // 2, length, seed=int(rng.integers(1 << 30)))
    uniform = rng.integers(0, len(spec.vocab), size=(batch - batch // 2, 1 + length))
    uniform[:, 0] = len(spec.vocab)
    return np.concatenate([sampled, uniform])


@pytest.mark.parametrize("name", specs.LIBRARY)
def test_truth_equals_next_dist_everywhere(name: str) -> None:
    spec, rng = LIBRARY[name], np.random.default_rng(7)
    tokens = _random_tokens(spec, rng, 24)
    probs, rule_ids = truth(spec, tokens)
    assert probs.shape == (*tokens.shape, len(spec.vocab)) and probs.dtype == np.float64
    for b in range(len(tokens)):
        for t in range(tokens.shape[1]):
            expected, rule_id = next_dist(spec, tokens[b, 1 : t + 1])
            assert rule_ids[b, t] == rule_id, (b, t)
            assert np.array_equal(probs[b, t], expected), (b, t)


def test_truth_rows_are_distributions() -> None:
    spec = LIBRARY["toy_language"]
    probs, rule_ids = truth(spec, _random_tokens(spec, np.random.default_rng(1), 64))
    assert np.allclose(probs.sum(-1), 1.0, atol=1e-12) and (probs >= 0).all()
    assert (rule_ids[:, 0] == spec.start_rule_id).all()
    assert ((rule_ids >= 0) & (rule_ids < spec.start_rule_id))[:, 1:].all()


def test_truth_accepts_a_full_length_sequence() -> None:
    spec = LIBRARY["induction"]
    tokens, _ = specs.sample(spec, 3, spec.max_len, seed=0)
    probs, _ = truth(spec, tokens)
    assert probs.shape == (3, spec.max_len + 1, len(spec.vocab))


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ([0, 50], "context[1] = 50 is not a token id"),  # BOS inside the context
        ([0, -1], "context[1] = -1"),
        ([0, 1.0], "context[1] is 1.0, not a token id"),
        ([True], "context[0] is True"),
        ([0] * 129, "more than max_len 128"),
    ],
)
def test_bad_contexts(context: list, message: str) -> None:
    with pytest.raises(CraftError, match=message.replace("[", r"\[")):
        next_dist_exact(LIBRARY["toy_language"], context)


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (np.full((2,), 12), "expected an integer array"),
        (np.full((2, 3), 12.0), "expected an integer array"),
        (np.zeros((2, 3), dtype=np.int64), "column 0 must be BOS"),
        (np.array([[12, 0, 12]]), "must be in 0..11"),
        (np.array([[12, 0, 13]]), "must be in 0..11"),
        (np.full((1, 34), 12), "33 tokens after BOS"),
    ],
)
def test_bad_token_arrays(tokens: np.ndarray, message: str) -> None:
    with pytest.raises(CraftError, match=message):
        truth(LIBRARY["induction"], tokens)


def test_rule_index_and_encode() -> None:
    spec = LIBRARY["toy_language"]
    assert specs.rule_index(spec, "fallback") == 16
    assert specs.rule_index(spec, "start") == spec.start_rule_id
    with pytest.raises(CraftError, match="no rule named 'nope'"):
        specs.rule_index(spec, "nope")
    assert specs.encode(spec, ["alice", "."]) == (0, 48)
    with pytest.raises(CraftError, match="did you mean 'alice'"):
        specs.encode(spec, ["alise"])


@pytest.mark.parametrize("name", specs.LIBRARY)
def test_contexts_for_rule_fire_that_rule(name: str) -> None:
    spec = LIBRARY[name]
    rng = np.random.default_rng(3)
    for rule_id in range(spec.start_rule_id + 1):
        contexts = specs.contexts_for_rule(spec, rule_id, rng, 5)
        assert len(contexts) == 5
        for context in contexts:
            assert len(context) <= spec.max_len
            assert next_dist_exact(spec, context)[1] == rule_id


def test_contexts_for_a_shadowed_rule_fail_cleanly() -> None:
    with pytest.warns(specs.CraftWarning):
        spec = parse_spec(
            """
format: craft-spec/1
name: dead
vocab: {T: [a, b]}
max_len: 8
start: {a: 1}
rules:
  - bigram: {"*": {T: 1}}
  - induction: {on: a}
""",
        )
    with pytest.raises(CraftError, match="found only 0 of 2 contexts where rule 'induction-1'"):
        specs.contexts_for_rule(spec, 1, np.random.default_rng(0), 2)
    with pytest.raises(CraftError, match="rule id 5 does not exist"):
        specs.contexts_for_rule(spec, 5, np.random.default_rng(0), 2)
