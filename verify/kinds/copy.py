"""Copy rules in the verifier: the token ``offset`` back, copied at a cue."""

from __future__ import annotations

from hypothesis import strategies as st

from specs.model import Copy, Spec
from verify.kinds.base import Tail, VerifyKind


def _tail(rule: Copy, spec: Spec) -> Tail:
    any_token = st.integers(0, len(spec.vocab) - 1)
    between = st.lists(any_token, min_size=rule.offset - 1, max_size=rule.offset - 1)
    cues = st.sampled_from(sorted(rule.cue))

    def tail(draw) -> list[int]:
        """The copied token, ``offset - 1`` others, the cue."""
        return [draw(any_token), *draw(between), draw(cues)]

    return tail


KIND = VerifyKind(
    key="copy",
    tail=_tail,
    tokens=lambda rule: frozenset(rule.cue),
    fixed=lambda rule: False,  # the answer is a copied token
)
