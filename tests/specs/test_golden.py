"""The golden table (tests/golden.py) against the exact ground truth."""

from __future__ import annotations

from fractions import Fraction

import pytest

import specs
from tests.golden import GOLDEN, GoldenCase

_SPECS = {name: specs.load_library(name) for name in specs.LIBRARY}


@pytest.mark.parametrize("case", GOLDEN, ids=[case.id for case in GOLDEN])
def test_golden_case(case: GoldenCase) -> None:
    spec = _SPECS[case.spec]
    assert sum(Fraction(p) for p in case.expected.values()) == 1, "the case itself is wrong"
    dist, rule_id = specs.next_dist_exact(spec, specs.encode(spec, case.context))
    assert spec.rule_names()[rule_id] == case.rule
    assert dist.probs == case.expected_probs(spec.vocab.tokens)


def test_golden_covers_every_rule_of_every_library_spec() -> None:
    for name, spec in _SPECS.items():
        covered = {case.rule for case in GOLDEN if case.spec == name}
        assert covered == set(spec.rule_names()), name


def test_golden_has_three_cases_per_rule_kind() -> None:
    kinds: dict[str, int] = {}
    for case in GOLDEN:
        spec = _SPECS[case.spec]
        rule_id = specs.rule_index(spec, case.rule)
        kind = "start" if rule_id == spec.start_rule_id else type(spec.rules[rule_id]).__name__
        kinds[kind] = kinds.get(kind, 0) + 1
    every = {"start", "Bigram", "Trigram", "SkipBigram", "Induction", "Copy", "Bracket"}
    assert set(kinds) == every
    assert min(kinds.values()) >= 3, kinds


def test_golden_truth_agrees_with_batched_truth() -> None:
    """The batched numpy ground truth gives the same numbers at the golden contexts."""
    for case in GOLDEN:
        spec = _SPECS[case.spec]
        row = [len(spec.vocab), *specs.encode(spec, case.context)]
        probs, rule_ids = specs.truth(spec, [row])
        expected = [float(p) for p in case.expected_probs(spec.vocab.tokens)]
        assert probs[0, -1].tolist() == expected, case.id
        assert spec.rule_names()[rule_ids[0, -1]] == case.rule, case.id
