"""Bracket rules in the verifier: the closer of the innermost open bracket, at a cue."""

from __future__ import annotations

from hypothesis import strategies as st

from specs.model import Bracket, Spec
from verify.kinds.base import Tail, VerifyKind

MAX_DEPTH = 10  # openers drawn before the cue (nesting depths 1..10, the bar is 8)


def _tail(rule: Bracket, spec: Spec) -> Tail:
    openers = st.sampled_from([o for o, _ in rule.pairs])
    fillers = st.lists(st.integers(0, len(spec.vocab) - 1), max_size=3)
    depth = st.integers(1, max(1, min(MAX_DEPTH, (spec.max_len - 1) // 4)))
    cues = st.sampled_from(sorted(rule.cue))

    def tail(draw) -> list[int]:
        """Openers separated by random fillers (which may close or cross), then a cue;
        the fillers can empty the stack, so the rule need not fire: the strategy
        prefers contexts where it does, the claim judges whatever fires."""
        out: list[int] = []
        for _ in range(draw(depth)):
            out += [draw(openers), *draw(fillers)]
        return [*out, draw(cues)]

    return tail


KIND = VerifyKind(
    key="bracket",
    tail=_tail,
    tokens=lambda rule: frozenset(t for pair in rule.pairs for t in pair) | rule.cue,
    fixed=lambda rule: len(rule.pairs) == 1,  # one closer: one possible answer
    # the minimum matters only after a closer on an empty stack: the spec's own sequences
    # have none (tests/craft/test_bracket_rule.py breaks it directly)
    off_support=frozenset({"bracket-min"}),
)
