"""Bigram rules in the verifier: the key token alone, no head."""

from __future__ import annotations

from hypothesis import strategies as st

from specs.model import Bigram, Spec
from verify.kinds.base import Tail, VerifyKind


def _tail(rule: Bigram, spec: Spec) -> Tail:
    keys = st.sampled_from(sorted(rule.keys))
    return lambda draw: [draw(keys)]


KIND = VerifyKind(
    key="bigram",
    tail=_tail,
    tokens=lambda rule: frozenset(),  # no head serves a bigram: nothing to probe with
    fixed=lambda rule: len({dist for _, dist in rule.table}) == 1,
)
