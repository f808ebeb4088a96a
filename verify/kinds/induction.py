"""Induction rules in the verifier: a copied token, so no fixed distribution."""

from __future__ import annotations

from hypothesis import strategies as st

from specs.model import Induction, Spec
from verify.kinds.base import Tail, VerifyKind


def _tail(rule: Induction, spec: Spec) -> Tail:
    from verify.strategies import runs  # the shared run strategy (imports this package)

    nouns = st.sampled_from(sorted(rule.on))
    gaps = runs(len(spec.vocab), 0, max(0, spec.max_len - 2))

    def tail(draw) -> list[int]:
        """x, gap, x."""
        x = draw(nouns)
        return [x, *draw(gaps), x]

    return tail


KIND = VerifyKind(
    key="induction",
    tail=_tail,
    tokens=lambda rule: frozenset(rule.on),
    fixed=lambda rule: False,
    reads_prev=True,
)
