"""Trigram rules in the verifier: ``x[t-1]`` read through the previous-token head."""

from __future__ import annotations

from hypothesis import strategies as st

from specs.model import Spec, Trigram
from verify.kinds.base import Tail, VerifyKind


def _tail(rule: Trigram, spec: Spec) -> Tail:
    first, second = st.sampled_from(sorted(rule.first)), st.sampled_from(sorted(rule.second))
    return lambda draw: [draw(first), draw(second)]


KIND = VerifyKind(
    key="trigram",
    tail=_tail,
    tokens=lambda rule: rule.first | rule.second | {i for i, _ in rule.next.items},
    reads_prev=True,
    condition_scored=True,
)
