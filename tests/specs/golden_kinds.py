"""More golden cases of the bracket and copy kinds, for the ground truth (specs only).

``tests/golden.py`` holds every library rule's cases at every level; these add the
stack's corner cases (crossed, unmatched, deep) and copy's edges, in the same
:class:`GoldenCase` form. Worked from the semantics in ``specs/README.md``: the
bracket stack (openers push, the top's closer pops, other closers are ignored), and copy
of ``x[t - offset]``.
"""

from __future__ import annotations

from tests.golden import (
    ADJ,
    FUNC,
    NOUN,
    PLACE,
    PREVIOUS_TOKEN_CASES,
    VERB_I,
    VERB_T,
    GoldenCase,
    _each,
)

NEW_CASE_SPECS = ("previous_token", "toy_language_brackets")

_SYMBOLS = "# $ % & + = ~ ^ < > | ! ; : / @"
_UNIFORM17 = _each(f"{_SYMBOLS} ?", "1")


def _case(spec: str, context: str, rule: str, expected: dict[str, str]) -> GoldenCase:
    return GoldenCase(spec, tuple(context.split()), rule, expected)


_PREVIOUS_TOKEN_CASES = PREVIOUS_TOKEN_CASES  # in the main table too (it compiles)

_TOY = "toy_language_brackets"
_PUNCT_ROW = (
    _each(NOUN, "0.05") | _each(VERB_T, "0.10") | _each(VERB_I, "0.10")
    | _each(ADJ, "0.05") | _each(FUNC, "0.70")
)  # fmt: skip
_BRACKET_ROW = (
    _each(NOUN, "0.40") | _each(PLACE, "0.20") | _each(ADJ, "0.20") | _each(FUNC, "0.20")
)  # fmt: skip
_VERB_T_ROW = (
    _each(NOUN, "0.31") | _each(PLACE, "0.30") | _each(ADJ, "0.10") | _each(FUNC, "0.15")
    | _each(". ,", "0.10") | {"(": "1/50", "[": "1/50"}
)  # fmt: skip
_TOY_BRACKET_CASES = [
    _case(_TOY, "", "start", _each(NOUN, "0.5") | _each(FUNC, "0.3") | _each(PLACE, "0.2")),
    _case(_TOY, "alice ( bob .", "close-bracket", {")": "1"}),
    _case(_TOY, "the ( alice [ bob ,", "close-bracket", {"]": "1"}),  # nested: innermost
    _case(_TOY, "( [ ] .", "close-bracket", {")": "1"}),
    _case(_TOY, "( [ ( ( [ [ ( [ .", "close-bracket", {"]": "1"}),  # depth 8
    _case(_TOY, "( [ ( ( [ [ ( [ ] ) ] ] ) ) .", "close-bracket", {"]": "1"}),
    _case(_TOY, "( [ ) .", "close-bracket", {"]": "1"}),  # crossed: ")" is ignored
    _case(_TOY, "( [ ) ] .", "close-bracket", {")": "1"}),  # crossed, "]" closes "["
    _case(_TOY, ") ] ( ,", "close-bracket", {")": "1"}),  # unmatched closers ignored
    _case(_TOY, "alice ( alice .", "close-bracket", {")": "1"}),  # not induction: cue "."
    _case(_TOY, "( alice ) .", "fallback", _PUNCT_ROW),  # balanced: empty at the cue
    _case(_TOY, ") ] .", "fallback", _PUNCT_ROW),  # closers on an empty stack
    _case(_TOY, ".", "fallback", _PUNCT_ROW),  # t = 1
    _case(_TOY, "( [ ) ] ) .", "fallback", _PUNCT_ROW),  # crossed, then closed in full
    _case(_TOY, "(", "fallback", _BRACKET_ROW),
    _case(_TOY, "( sees", "fallback", _VERB_T_ROW),  # the fallback opens brackets
    _case(_TOY, "( alice", "noun-bigrams", {"sees": "7/10", "helps": "1/5", "finds": "1/10"}),
]

GOLDEN_KINDS: list[GoldenCase] = _PREVIOUS_TOKEN_CASES + _TOY_BRACKET_CASES
