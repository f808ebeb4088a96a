"""Hypothesis strategies built from a spec, for ``@given`` tests and ``craft check``.

Every strategy draws token-id lists (contexts after BOS) through Hypothesis
primitives, so failures shrink: to shorter contexts first, then towards token id 0,
which means fewer distinct tokens.

Example:
    >>> from hypothesis import given
    >>> @given(contexts(spec, rule="noun-induction"))  # doctest: +SKIP
    ... def test_copies(ctx): ...
"""

from __future__ import annotations

import functools

from hypothesis import strategies as st

from specs.errors import CraftError
from specs.model import Bigram, Induction, SkipBigram, Spec, Trigram
from specs.truth import next_dist


def _rule_id(spec: Spec, name: str) -> int:
    names = spec.rule_names()
    if name not in names:
        raise CraftError(
            f"spec {spec.name!r} has no rule {name!r}", fix=f"use one of {', '.join(names)}"
        )
    return names.index(name)


def fired(spec: Spec, ctx: list[int]) -> str:
    """Name of the rule that gives the distribution after ``ctx``."""
    return spec.rule_names()[next_dist(spec, ctx)[1]]


def random_strings(spec: Spec, min_size: int = 0, max_size: int | None = None):
    """Uniformly random token strings (what no rule was designed for)."""
    top = spec.max_len if max_size is None else min(max_size, spec.max_len)
    return st.lists(st.integers(0, len(spec.vocab) - 1), min_size=min_size, max_size=top)


def repeated(spec: Spec, max_half: int | None = None):
    """Repeated random sequences ``s + s`` (the classic induction probe)."""
    half = spec.max_len // 2 if max_half is None else min(max_half, spec.max_len // 2)
    return random_strings(spec, 1, half).map(lambda s: s + s)


def _among(ids) -> st.SearchStrategy[int]:
    return st.sampled_from(sorted(ids))


def _built(spec: Spec, rule_id: int, max_prefix: int) -> st.SearchStrategy[list[int]]:
    """A context whose last position satisfies rule ``rule_id``'s condition.

    The strategies are built once, not on every draw (building and validating them was
    a fifth of the drawing time); the draws are the same, in the same order.
    """
    rule = spec.rules[rule_id]
    any_token = st.integers(0, len(spec.vocab) - 1)
    prefixes = functools.cache(lambda room: st.lists(any_token, max_size=room))
    if isinstance(rule, Bigram):
        keys = _among(rule.keys)
        tail_of = lambda draw: [draw(keys)]  # noqa: E731
    elif isinstance(rule, Trigram):
        first, second = _among(rule.first), _among(rule.second)
        tail_of = lambda draw: [draw(first), draw(second)]  # noqa: E731
    elif isinstance(rule, SkipBigram):
        lo, hi = rule.window
        gaps = st.lists(any_token, min_size=lo - 1, max_size=hi - 1)
        anchors, cues = _among(rule.anchor), _among(rule.cue)

        def tail_of(draw):
            """Anchor, gap, cue (the gap drawn first)."""
            gap = draw(gaps)
            return [draw(anchors), *gap, draw(cues)]
    elif isinstance(rule, Induction):
        nouns, gaps = _among(rule.on), st.lists(any_token, min_size=1, max_size=8)

        def tail_of(draw):
            """x, gap, x."""
            x = draw(nouns)
            return [x, *draw(gaps), x]
    else:
        raise TypeError(type(rule).__name__)

    @st.composite
    def built(draw):
        """The rule's condition after a random prefix."""
        tail = tail_of(draw)
        room = max(0, min(max_prefix, spec.max_len - len(tail)))
        return (draw(prefixes(room)) + tail)[-spec.max_len :]

    return built()


def contexts(
    spec: Spec, rule: str | None = None, not_rule: str | None = None, max_prefix: int = 24
):
    """Contexts where ``rule`` fires (built to make it hold) and/or ``not_rule`` does not.

    Raises:
        CraftError: an unknown rule name.
    """
    if rule is None or rule == "start":
        base = st.just([]) if rule == "start" else random_strings(spec, max_size=max_prefix + 4)
    else:
        base = _built(spec, _rule_id(spec, rule), max_prefix)
        base = base.filter(lambda c: fired(spec, c) == rule)
    if not_rule is not None:
        _rule_id(spec, not_rule)
        base = base.filter(lambda c: fired(spec, c) != not_rule)
    return base


def window_pairs(spec: Spec, rule: str, window: int) -> st.SearchStrategy:
    """Pairs ``(ctx, other)`` where ``rule`` fires in both, sharing their last
    ``window + 1`` tokens and differing in at least one token before those.

    ``ctx`` is the rule's condition (as in :func:`contexts`) after 1 to 25 tokens more
    than the window needs; ``other`` redraws every token more than ``window`` back (when
    the redraw equals the original, its nearest token is changed: a pair that does not
    differ cannot show a dependence). Prefix tokens are drawn one choice each, after
    their count (``st.lists`` adds a continue-flag per element), which halves
    Hypothesis' work per pair; a failure shrinks to one far token and the shortest
    condition.

    Raises:
        CraftError: an unknown rule name.
    """
    rule_id = _rule_id(spec, rule)
    near = window + 1  # the current token and the `window` tokens before it
    n_tok = len(spec.vocab)
    tails = _built(spec, rule_id, 0)
    strings = functools.cache(lambda k: st.integers(0, n_tok**k - 1))

    def string(draw, k: int) -> list[int]:
        """``k`` tokens from one integer choice (its base-``n_tok`` digits)."""
        x = draw(strings(k)) if k else 0
        return [(x // n_tok**i) % n_tok for i in reversed(range(k))]

    @st.composite
    def pairs(draw):
        """A context and its far-redrawn twin."""
        tail = draw(tails)
        least = max(0, near + 1 - len(tail))  # at least one far token
        most = max(least, min(least + 24, spec.max_len - len(tail)))
        ctx = string(draw, draw(st.integers(least, most))) + tail
        far = max(0, len(ctx) - near)
        new = string(draw, far)
        if far and new == ctx[:far]:
            new[-1] = (new[-1] + 1) % n_tok
        return ctx, new + ctx[far:]

    return pairs().filter(lambda pr: fired(spec, pr[0]) == fired(spec, pr[1]) == rule)


@st.composite
def counterfactual_pairs(draw, spec: Spec, category: str, rule: str | None = None):
    """``(ctx, ctx2)``: ctx2 swaps at least one token of ``category`` for another token of
    the same category and changes nothing else."""
    members = spec.vocab.resolve(category) if category in spec.vocab.category_names() else None
    if not members or len(members) < 2:
        raise CraftError(
            f"spec {spec.name!r} has no category {category!r} with two or more tokens",
            fix=f"use one of {', '.join(spec.vocab.category_names())}",
        )
    ctx = draw(contexts(spec, rule=rule).filter(lambda c: any(t in members for t in c)))
    slots = [i for i, t in enumerate(ctx) if t in members]
    chosen = draw(st.lists(st.sampled_from(slots), min_size=1, unique=True))
    other = list(ctx)
    for i in chosen:
        other[i] = draw(_among(members - {ctx[i]}))
    return ctx, other
