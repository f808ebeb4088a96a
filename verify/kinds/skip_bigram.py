"""Skip-bigram rules in the verifier: a detector head, claimed by ``skip-bigram`` roles."""

from __future__ import annotations

from hypothesis import strategies as st

from specs.model import SkipBigram, Spec
from verify.kinds.base import Tail, VerifyKind


def _tail(rule: SkipBigram, spec: Spec) -> Tail:
    lo, hi = rule.window
    gaps = st.lists(st.integers(0, len(spec.vocab) - 1), min_size=lo - 1, max_size=hi - 1)
    anchors, cues = st.sampled_from(sorted(rule.anchor)), st.sampled_from(sorted(rule.cue))

    def tail(draw) -> list[int]:
        """Anchor, gap, cue (the gap drawn first)."""
        gap = draw(gaps)
        return [draw(anchors), *gap, draw(cues)]

    return tail


KIND = VerifyKind(
    key="skip_bigram",
    tail=_tail,
    tokens=lambda rule: rule.anchor | rule.cue | {i for i, _ in rule.next.items},
    head_roles=("skip-bigram",),
)
