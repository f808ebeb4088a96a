"""THE golden table: (library spec, context, firing rule, exact next-token distribution).

One table, reused at every level: the ground truth (tests/specs/test_golden.py), the
compiler, both model families and the verifier. Every case is worked by hand from the
spec's rules (see specs/README.md for the semantics); each rule of every library spec
appears at least once, with window edges for skip-bigrams, disagreeing earlier
occurrences for induction, and higher-priority rules beating lower ones.

Positions: BOS at 0, ``context[i]`` at position ``i + 1``; the case describes the
distribution of the token after the context. Tokens absent from ``expected`` have
probability 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class GoldenCase:
    """One hand-worked ground-truth case.

    Attributes:
        spec: library spec name (``specs.library_path(spec)``).
        context: token names after BOS (empty: only BOS, the start distribution).
        rule: name of the rule that fires (``"start"`` for the empty context).
        expected: token -> probability as an exact fraction string; others are 0.
    """

    spec: str
    context: tuple[str, ...]
    rule: str
    expected: dict[str, str]

    @property
    def id(self) -> str:
        """A readable pytest id: ``toy_language:the alice``."""
        return f"{self.spec}:{' '.join(self.context) or '<bos>'}"

    def expected_probs(self, tokens: Sequence[str]) -> tuple[Fraction, ...]:
        """The expected distribution over a vocabulary (token names in id order)."""
        return tuple(Fraction(self.expected.get(token, "0")) for token in tokens)


def _each(tokens: str, total: str) -> dict[str, str]:
    """Spread ``total`` uniformly over space-separated ``tokens``."""
    names = tokens.split()
    share = Fraction(total) / len(names)
    return {name: str(share) for name in names}


# toy_language categories
NOUN = "alice bob carol dave eve frank grace henry"
PLACE = "park home store school beach office garden lake"
VERB_T = "sees helps finds knows likes meets calls tells"
VERB_I = "runs walks sits waits jumps falls swims plays"
ADJ = "big small old new red blue fast tall"
FUNC = "the a in on at to and or"
PUNCT = ". ,"

# toy_language fallback rows (part-of-speech matrix, uniform within a category)
_NOUN_ROW = (
    _each(NOUN, "0.05") | _each(PLACE, "0.10") | _each(VERB_T, "0.25")
    | _each(VERB_I, "0.15") | _each(FUNC, "0.15") | _each(PUNCT, "0.30")
)  # fmt: skip
_PLACE_ROW = (
    _each(NOUN, "0.05") | _each(VERB_T, "0.05") | _each(VERB_I, "0.05")
    | _each(FUNC, "0.40") | _each(PUNCT, "0.45")
)  # fmt: skip
_VERB_T_ROW = (
    _each(NOUN, "0.35") | _each(PLACE, "0.30") | _each(ADJ, "0.10")
    | _each(FUNC, "0.15") | _each(PUNCT, "0.10")
)  # fmt: skip
_VERB_I_ROW = _each(PLACE, "0.15") | _each(FUNC, "0.35") | _each(PUNCT, "0.50")
_ADJ_ROW = _each(NOUN, "0.45") | _each(PLACE, "0.40") | _each(ADJ, "0.10") | _each(FUNC, "0.05")
_FUNC_ROW = (
    _each(NOUN, "0.25") | _each(PLACE, "0.25") | _each(VERB_T, "0.05")
    | _each(VERB_I, "0.05") | _each(ADJ, "0.35") | _each(FUNC, "0.05")
)  # fmt: skip
_PUNCT_ROW = (
    _each(NOUN, "0.05") | _each(VERB_T, "0.10") | _each(VERB_I, "0.10")
    | _each(ADJ, "0.05") | _each(FUNC, "0.70")
)  # fmt: skip

_FILL8 = ("runs", ".") * 4  # eight neutral tokens (no anchor, no cue, no noun)


def _case(spec: str, context: str | tuple[str, ...], rule: str, expected: dict) -> GoldenCase:
    ctx = tuple(context.split()) if isinstance(context, str) else context
    return GoldenCase(spec, ctx, rule, expected)


_TOY = "toy_language"
_ROW_ALICE = {"sees": "7/10", "helps": "1/5", "finds": "1/10"}
_ROW_BOB = {"knows": "7/10", "likes": "1/5", "meets": "1/10"}
_ROW_HENRY = {"meets": "7/10", "calls": "1/5", "tells": "1/10"}
_START = _each(NOUN, "0.5") | _each(FUNC, "0.3") | _each(PLACE, "0.2")

_TOY_CASES = [
    _case(_TOY, "", "start", _START),
    # 1. token trigrams
    _case(_TOY, "the alice", "the-alice", {"runs": "1"}),
    _case(_TOY, "the bob", "the-bob", {"walks": "1"}),
    _case(_TOY, "the carol", "the-carol", {"sits": "1"}),
    _case(_TOY, "the dave", "the-dave", {"waits": "1"}),
    _case(_TOY, "in park", "in-park", {"alice": "1"}),
    _case(_TOY, "on home", "on-home", {"bob": "1"}),
    _case(_TOY, "at store", "at-store", {"carol": "1"}),
    _case(_TOY, "to school", "to-school", {"dave": "1"}),
    # a token trigram beats induction (alice was followed by sees the first time)
    _case(_TOY, "bob alice sees the alice", "the-alice", {"runs": "1"}),
    # 2. category trigram, uniform over VERB_I; it also beats induction
    _case(_TOY, "a eve", "func-noun", _each(VERB_I, "1")),
    _case(_TOY, "alice sees a alice", "func-noun", _each(VERB_I, "1")),
    # 3. skip-bigrams: anchor at s, cue at t, fires iff 2 <= t - s <= 9
    _case(_TOY, "beach the big", "beach-big", {"at": "1"}),  # distance 2 (lo)
    _case(_TOY, ("beach", *_FILL8, "big"), "beach-big", {"at": "1"}),  # distance 9 (hi)
    _case(_TOY, ("beach", *_FILL8, "runs", "big"), "fallback", _ADJ_ROW),  # distance 10
    _case(_TOY, "beach big", "fallback", _ADJ_ROW),  # distance 1
    _case(_TOY, "office , small", "office-small", {"to": "1"}),
    _case(_TOY, "garden the red old", "garden-old", {"and": "1"}),
    _case(_TOY, "lake . a new", "lake-new", {"or": "1"}),
    # 4. induction: the FIRST earlier occurrence decides (alice: sees first, helps later)
    _case(_TOY, "alice sees bob alice helps alice", "noun-induction", {"sees": "1"}),
    _case(_TOY, "bob knows eve bob", "noun-induction", {"knows": "1"}),
    _case(_TOY, "carol . carol", "noun-induction", {".": "1"}),
    _case(_TOY, "grace grace", "noun-induction", {"grace": "1"}),
    # 5. noun bigrams 70/20/10
    _case(_TOY, "alice", "noun-bigrams", _ROW_ALICE),
    _case(_TOY, "runs bob", "noun-bigrams", _ROW_BOB),
    _case(_TOY, "henry", "noun-bigrams", _ROW_HENRY),
    # 6. place bigrams (after in/on/at/to a token trigram wins instead)
    _case(_TOY, "a park", "place-bigrams", {"the": "1"}),
    _case(_TOY, "runs school", "place-bigrams", {"on": "1"}),
    # 7. fallback part-of-speech matrix
    _case(_TOY, "runs", "fallback", _VERB_I_ROW),
    _case(_TOY, "the", "fallback", _FUNC_ROW),
    _case(_TOY, ".", "fallback", _PUNCT_ROW),
    _case(_TOY, "beach", "fallback", _PLACE_ROW),
    _case(_TOY, "sees", "fallback", _VERB_T_ROW),
    _case(_TOY, "big", "fallback", _ADJ_ROW),
    _case(_TOY, "eve , alice ,", "fallback", _PUNCT_ROW),  # induction is on nouns only
]

_FOODS = "bread soup tea rice"
_BIGRAM_CASES = [
    _case("bigram", "", "start", _each("i you we", "1")),
    _case("bigram", "i", "subject-verb", {"eat": "1/2", "cook": "1/2"}),
    _case("bigram", "we", "subject-verb", _each("eat drink cook", "1")),
    _case("bigram", "you drink", "verb-object", {"tea": "3/4", "soup": "1/4"}),
    _case("bigram", "i cook", "verb-object", _each(_FOODS, "1")),
    _case("bigram", "i eat bread", "fallback", {".": "4/5"} | _each(_FOODS, "0.2")),
    _case("bigram", "i eat bread .", "fallback", _each("i you we", "1")),  # the "*" row
]

_SKIP = "skip_trigram"
_ANS = _each("apple berry cherry", "1")
_COIN = {"berry": "1/2", "cherry": "1/2"}
_SKIP_CASES = [
    _case(_SKIP, "", "start", _each("red blue", "0.5") | _each("um so then well", "0.5")),
    _case(_SKIP, "so then", "so-then", {"ask": "1"}),
    _case(_SKIP, "red so then", "so-then", {"ask": "1"}),
    _case(_SKIP, "red um ask", "red-ask", {"apple": "1"}),  # distance 2 (lo)
    _case(_SKIP, "red um um um um um ask", "red-ask", {"apple": "1"}),  # distance 6 (hi)
    _case(_SKIP, "red um um um um um um ask", "fallback", _ANS),  # distance 7
    _case(_SKIP, "red ask", "fallback", _ANS),  # distance 1
    _case(_SKIP, "blue tell", "blue-cue", _COIN),  # distance 1 (lo)
    _case(_SKIP, "blue um um um ask", "blue-cue", _COIN),  # distance 4 (hi)
    _case(_SKIP, "blue um um um um tell", "fallback", _ANS),  # distance 5
    _case(_SKIP, "blue red um ask", "red-ask", {"apple": "1"}),  # both match: priority
    _case(_SKIP, "red", "fallback", _each("um so then well", "0.6") | _each("ask tell", "0.4")),
]

_IND = "induction"
_UNIFORM12 = _each("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu", "1")
_INDUCTION_CASES = [
    _case(_IND, "", "start", _UNIFORM12),
    _case(_IND, "alpha", "uniform", _UNIFORM12),
    _case(_IND, "alpha beta gamma", "uniform", _UNIFORM12),
    _case(_IND, "alpha beta alpha", "induction", {"beta": "1"}),
    _case(_IND, "alpha beta gamma alpha delta alpha", "induction", {"beta": "1"}),
    _case(_IND, "alpha alpha", "induction", {"alpha": "1"}),
    _case(_IND, "mu kappa iota kappa", "induction", {"iota": "1"}),
]

_PREV = "previous_token"
_SYMBOLS = "# $ % & + = ~ ^ < > | ! ; : / @"
_UNIFORM17 = _each(f"{_SYMBOLS} ?", "1")
PREVIOUS_TOKEN_CASES = [
    _case(_PREV, "", "start", _each(_SYMBOLS, "1")),
    _case(_PREV, "# $ ?", "copy-previous", {"$": "1"}),
    _case(_PREV, "@ ? ?", "copy-previous", {"?": "1"}),  # the copied token may be a cue
    _case(_PREV, "? # ?", "copy-previous", {"#": "1"}),
    _case(_PREV, "?", "uniform", _UNIFORM17),  # t = 1: t - offset is BOS, never copied
    _case(_PREV, "% &", "uniform", _UNIFORM17),
]

_BRK = "toy_language_brackets"
_BRACKET_ROW = _each(NOUN, "0.40") | _each(PLACE, "0.20") | _each(ADJ, "0.20") | _each(FUNC, "0.20")
_DEPTH8 = ("(", "[") * 4  # eight openers, innermost "["
BRACKET_CASES = [
    _case(_BRK, "", "start", _START),
    _case(_BRK, "the alice", "the-alice", {"runs": "1"}),
    _case(_BRK, "alice ( bob .", "close-bracket", {")": "1"}),
    _case(_BRK, "alice ( bob [ carol ,", "close-bracket", {"]": "1"}),  # innermost first
    _case(_BRK, "alice ( bob [ carol ] dave .", "close-bracket", {")": "1"}),  # inner closed
    _case(_BRK, "alice ( bob [ carol ) dave .", "close-bracket", {"]": "1"}),  # ")" ignored
    _case(_BRK, "( ) ) ] . ( ,", "close-bracket", {")": "1"}),  # unmatched on empty, reopened
    _case(_BRK, (*_DEPTH8, "alice", "."), "close-bracket", {"]": "1"}),  # depth 8
    _case(_BRK, (*_DEPTH8, "(", "alice", ","), "close-bracket", {")": "1"}),  # depth 9
    _case(_BRK, (*_DEPTH8, "]", ")", "]", "alice", "."), "close-bracket", {")": "1"}),  # 5
    _case(_BRK, "alice ) bob .", "fallback", _PUNCT_ROW),  # a closer on an empty stack
    _case(_BRK, "alice ( bob ) carol .", "fallback", _PUNCT_ROW),  # closed: no fire
    _case(_BRK, "alice ( bob", "noun-bigrams", _ROW_BOB),  # not a cue
    _case(_BRK, "alice (", "fallback", _BRACKET_ROW),
    _case(_BRK, "alice ( bob alice", "noun-induction", {"(": "1"}),
]
_SEEN = {c.rule for c in BRACKET_CASES}
for _c in _TOY_CASES:  # one case of every other rule: the toy language's, unchanged
    if _c.rule not in _SEEN and _c.rule != "fallback":
        BRACKET_CASES.append(GoldenCase(_BRK, _c.context, _c.rule, _c.expected))
        _SEEN.add(_c.rule)

GOLDEN: list[GoldenCase] = (
    _TOY_CASES
    + _BIGRAM_CASES
    + _SKIP_CASES
    + _INDUCTION_CASES
    + PREVIOUS_TOKEN_CASES
    + BRACKET_CASES
)
