"""The sampler: deterministic per seed, and distributed exactly as the ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

import specs
from specs import CraftError, sample, truth
from specs.sample import draw

TOY = specs.load_library("toy_language")


def _chi2_critical(df: int, z: float = 3.719) -> float:
    """Wilson-Hilferty upper quantile of chi-square (z = 3.719: p = 1e-4)."""
    h = 2.0 / (9.0 * df)
    return df * (1.0 - h + z * math.sqrt(h)) ** 3


def _chi2(counts: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    """Pearson statistic over the support of ``probs``; mass outside it is a failure."""
    support = probs > 0
    assert counts[~support].sum() == 0, "sampled a token of probability 0"
    expected = probs[support] * counts.sum()
    stat = float((((counts[support] - expected) ** 2) / expected).sum())
    return stat, int(support.sum()) - 1


def test_shapes_and_bos() -> None:
    tokens, rule_ids = sample(TOY, 5, 7, seed=0)
    assert tokens.shape == (5, 8) and tokens.dtype == np.int64
    assert rule_ids.shape == (5, 7) and rule_ids.dtype == np.int64
    assert (tokens[:, 0] == len(TOY.vocab)).all()
    assert ((tokens[:, 1:] >= 0) & (tokens[:, 1:] < len(TOY.vocab))).all()
    assert (rule_ids[:, 0] == TOY.start_rule_id).all()


def test_deterministic_per_seed() -> None:
    first = sample(TOY, 16, 32, seed=11)
    again = sample(TOY, 16, 32, seed=11)
    other = sample(TOY, 16, 32, seed=12)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])


def test_rule_ids_and_support_agree_with_truth() -> None:
    tokens, rule_ids = sample(TOY, 64, 64, seed=5)
    probs, truth_ids = truth(TOY, tokens)
    assert np.array_equal(truth_ids[:, :-1], rule_ids)
    drawn = np.take_along_axis(probs[:, :-1], tokens[:, 1:, None], axis=2)
    assert (drawn > 0).all()


def test_start_distribution_chi_square() -> None:
    tokens, _ = sample(TOY, 20_000, 1, seed=1)
    counts = np.bincount(tokens[:, 1], minlength=len(TOY.vocab))
    stat, df = _chi2(counts, TOY.start.array())
    assert df == 23 and stat < _chi2_critical(df)


def test_noun_bigram_row_chi_square() -> None:
    tokens, rule_ids = sample(TOY, 40_000, 2, seed=2)
    alice = TOY.vocab.index("alice")
    rows = tokens[:, 1] == alice
    assert (rule_ids[rows, 1] == specs.rule_index(TOY, "noun-bigrams")).all()
    counts = np.bincount(tokens[rows, 2], minlength=len(TOY.vocab))
    expected, _ = specs.next_dist(TOY, [alice])
    stat, df = _chi2(counts, expected)
    assert rows.sum() > 2000 and df == 2 and stat < _chi2_critical(df)


@pytest.mark.parametrize("name", specs.LIBRARY)
def test_every_rule_matches_its_expected_counts(name: str) -> None:
    """Per rule, the count of each next token is within 5 sigma of the sum of the true
    probabilities over the positions where the rule fired (sum of Bernoullis)."""
    spec = specs.load_library(name)
    tokens, rule_ids = sample(spec, 512, min(spec.max_len, 64), seed=3)
    probs, _ = truth(spec, tokens)
    probs, following = probs[:, :-1], tokens[:, 1:]
    onehot = np.eye(len(spec.vocab))[following]
    for rule_id in np.unique(rule_ids):
        fired = rule_ids == rule_id
        p, observed = probs[fired], onehot[fired].sum(0)
        expected, var = p.sum(0), (p * (1 - p)).sum(0)
        z = np.abs(observed - expected) / np.sqrt(np.maximum(var, 1e-12))
        assert (z < 5).all(), (spec.rule_names()[rule_id], z.max())


def test_every_toy_rule_fires_with_plausible_frequency() -> None:
    tokens, rule_ids = sample(TOY, 512, 128, seed=4)
    freq = np.bincount(rule_ids.ravel(), minlength=TOY.start_rule_id + 1) / rule_ids.size
    names = TOY.rule_names()
    assert (freq > 0).all(), [n for n, f in zip(names, freq, strict=True) if f == 0]
    assert freq[TOY.start_rule_id] == pytest.approx(1 / 128)
    assert freq.argmax() == specs.rule_index(TOY, "fallback")
    assert 0.01 < freq[specs.rule_index(TOY, "noun-induction")] < 0.2
    assert freq[: specs.rule_index(TOY, "func-noun")].max() < 0.01  # token trigrams are rare


def test_draw_never_picks_zero_probability_tokens() -> None:
    probs = np.array([[0.0, 0.5, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]])
    for u in [0.0, 0.25, 0.4999999, 0.5, 0.9999999999999999]:
        picked = draw(probs, np.array([u, u]))
        assert picked[0] in (1, 3) and picked[1] == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch": 2, "length": 129, "seed": 0}, "length is 129, expected an integer 0..128"),
        ({"batch": -1, "length": 3, "seed": 0}, "batch is -1"),
        ({"batch": 2, "length": 3, "seed": -5}, "seed is -5"),
        ({"batch": 2, "length": 3.0, "seed": 0}, "length is 3.0"),
        ({"batch": True, "length": 3, "seed": 0}, "batch is True"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(CraftError, match=message):
        sample(TOY, **kwargs)


def test_empty_batch_and_zero_length() -> None:
    tokens, rule_ids = sample(TOY, 0, 5, seed=0)
    assert tokens.shape == (0, 6) and rule_ids.shape == (0, 5)
    tokens, rule_ids = sample(TOY, 3, 0, seed=0)
    assert tokens.shape == (3, 1) and rule_ids.shape == (3, 0)


MIXED = specs.parse_spec(
    """
format: craft-spec/1
name: mixed
vocab: {A: [a, b], C: [c, d], E: [e, f, g]}
max_len: 40
start: {"*": 1}
rules:
  - name: tri
    trigram: {after: [a, C], next: {e: 1/2, f: 1/2}}
  - name: near
    skip_bigram: {anchor: [a, b], cue: c, window: [1, 2], next: {g: 1}}
  - name: far
    skip_bigram: {anchor: e, cue: [c, d], window: [3, 6], next: {a: 1/3, b: 2/3}}
  - name: copy
    induction: {on: [c, e, f]}
  - name: copy-late
    induction: {on: [d, g]}
  - name: rest
    bigram: {a: {C: 1}, "*": {"*": 1}}
""",
    "mixed.yaml",
)
SPECS = {**{name: specs.load_library(name) for name in specs.LIBRARY}, "mixed": MIXED}


def _reference_sample(spec: specs.Spec, batch: int, length: int, seed: int) -> tuple:
    """One row at a time from the exact oracle, one ``rng.random(batch)`` per position,
    each row drawn with :func:`draw` on its dense distribution."""
    rng = np.random.default_rng(seed)
    tokens = np.full((batch, 1 + length), len(spec.vocab), dtype=np.int64)
    rule_ids = np.empty((batch, length), dtype=np.int64)
    for t in range(length):
        uniforms = rng.random(batch)
        for b in range(batch):
            probs, rule_ids[b, t] = specs.next_dist(spec, [int(x) for x in tokens[b, 1 : t + 1]])
            tokens[b, t + 1] = draw(probs[None], uniforms[b : b + 1])[0]
    return tokens, rule_ids


@pytest.mark.parametrize("name", sorted(SPECS))
def test_sample_equals_row_by_row_reference(name: str) -> None:
    """Same seed, same tokens and rule ids as drawing row by row from the oracle."""
    spec = SPECS[name]
    length = min(spec.max_len, 40)
    got = sample(spec, 6, length, seed=9)
    want = _reference_sample(spec, 6, length, seed=9)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_mixed_windows_truth_agrees_with_exact() -> None:
    tokens, _ = sample(MIXED, 24, 40, seed=1)
    rng = np.random.default_rng(0)
    random_rows = np.concatenate(
        [np.full((8, 1), len(MIXED.vocab)), rng.integers(0, 7, (8, 40))], axis=1
    )
    for arr in (tokens, random_rows):
        probs, rule_ids = truth(MIXED, arr)
        for b in range(len(arr)):
            for t in range(arr.shape[1]):
                want, rule = specs.next_dist(MIXED, [int(x) for x in arr[b, 1 : t + 1]])
                assert rule_ids[b, t] == rule and np.array_equal(probs[b, t], want)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_draw_paths_agree(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guide-table stepping, its bisecting fallback and the sparse dense_rows fallback
    all give what :func:`draw` gives on the dense rows."""
    from specs import engine

    spec = SPECS[name]
    rng = np.random.default_rng(4)
    fast = engine.Tables(spec).dists
    monkeypatch.setattr(engine, "_GUIDE_BITS", 1)
    monkeypatch.setattr(engine, "_LINEAR_STEPS", 0)
    monkeypatch.setattr(engine, "_DENSE_LIMIT", 0)
    slow = engine.Tables(spec).dists
    assert slow.dense is None and slow.max_steps > 0 and fast.dense is not None
    n = len(fast.lens)
    dist = rng.integers(0, n, 4000)
    k = rng.integers(0, 2**53, 4000)
    k[:4] = [0, 2**53 - 1, 2**52, 2**52 - 1]
    dense = fast.dense_rows(dist)
    assert np.array_equal(slow.dense_rows(dist), dense)
    want = draw(dense, k / 2.0**53)
    assert np.array_equal(fast.draw(dist, k), want)
    assert np.array_equal(slow.draw(dist, k), want)


def test_toy_sampler_frequencies_match_truth_per_rule() -> None:
    """Per rule of the toy language, next-token counts of a large sample vs the summed
    exact probabilities (5 sigma, sums of Bernoullis)."""
    tokens, rule_ids = sample(TOY, 2048, 128, seed=21)
    probs, truth_ids = truth(TOY, tokens)
    assert np.array_equal(truth_ids[:, :-1], rule_ids)
    probs, following = probs[:, :-1], tokens[:, 1:]
    for rule_id in np.unique(rule_ids):
        fired = rule_ids == rule_id
        p = probs[fired]
        observed = np.bincount(following[fired], minlength=len(TOY.vocab))
        expected, var = p.sum(0), (p * (1 - p)).sum(0)
        assert observed[expected == 0].sum() == 0
        z = np.abs(observed - expected) / np.sqrt(np.maximum(var, 1e-12))
        assert (z < 5).all(), (TOY.rule_names()[rule_id], z.max())


def test_uncovered_context_raises() -> None:
    """A spec built in code without a fallback: the evaluator names the context."""
    import dataclasses

    partial = dataclasses.replace(TOY, rules=TOY.rules[:-1])  # drop the "*"-like fallback
    bos, sees = len(TOY.vocab), TOY.vocab.index("sees")
    with pytest.raises(CraftError, match=r"no rule covers the context \['<bos>', 'sees'\]"):
        truth(partial, np.array([[bos, sees]]))
    with pytest.raises(CraftError, match="no rule covers the context"):
        sample(partial, 64, 16, seed=0)
