"""verify/kinds: one module per rule kind, covering every kind the spec language has."""

from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import specs
import specs.kinds
from specs.truth import next_dist_exact
from verify import kinds
from verify.strategies import contexts


def test_every_spec_kind_has_a_verifier_module():
    assert set(kinds.KINDS) == set(specs.kinds.KEYS)


@functools.cache
def library(name: str):
    return specs.load_library(name)


def _rule(spec, key: str):
    return next(r for r in spec.rules if specs.kinds.kind_of(r).key == key)


@pytest.mark.parametrize(
    "name,key", [("previous_token", "copy"), ("toy_language_brackets", "bracket")]
)
@settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_rule_contexts_fire_the_new_kinds(name, key, data):
    """The claim strategy of a copy or bracket rule draws contexts where it fires, and
    the oracle's answer there is the copied token / the innermost open closer."""
    spec = library(name)
    rule = _rule(spec, key)
    ctx = data.draw(contexts(spec, rule=rule.name))
    dist, rid = next_dist_exact(spec, ctx)
    assert spec.rules[rid] is rule and dist.is_deterministic
    (answer,) = dist.support
    if key == "copy":
        assert answer == ctx[-1 - rule.offset]
    else:
        closers = {o: c for o, c in rule.pairs}
        stack: list[int] = []
        for t in ctx:
            if t in closers:
                stack.append(t)
            elif stack and closers[stack[-1]] == t:
                stack.pop()
        assert answer == closers[stack[-1]]


def test_bracket_and_copy_hooks():
    copy, bracket = (
        _rule(library("previous_token"), "copy"),
        _rule(library("toy_language_brackets"), "bracket"),
    )
    assert kinds.of(copy).tokens(copy) == copy.cue and not kinds.of(copy).fixed(copy)
    assert {o for o, _ in bracket.pairs} <= kinds.of(bracket).tokens(bracket)
    assert kinds.of(bracket).fixed(bracket) == (len(bracket.pairs) == 1)
