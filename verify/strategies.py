"""Hypothesis strategies built from a spec, for ``@given`` tests and ``craft check``.

Every strategy draws token-id lists (contexts after BOS) through Hypothesis
primitives, so failures shrink: to shorter contexts first, then towards token id 0,
which means fewer distinct tokens.

Contexts cover the whole length range up to ``max_len``: a random prefix before a
rule's ending is as likely long as short, so the ending sits at late positions as well
as early ones. A long run of random tokens is drawn as two choices (its length and a
seed), not one choice per token: Hypothesis' engine stays fast at 128 tokens, and a
failure it finds is shrunk further token by token by :func:`verify.sweep.shrink`.
:func:`contexts` also draws the spec's boundary contexts (:mod:`specs.nearmiss`) at
which the rule fires.

Example:
    >>> from hypothesis import given
    >>> @given(contexts(spec, rule="noun-induction"))  # doctest: +SKIP
    ... def test_copies(ctx): ...
"""

from __future__ import annotations

import functools

import numpy as np
from hypothesis import strategies as st

from specs.errors import CraftError
from specs.model import Spec
from specs.nearmiss import boundary_endings
from specs.truth import next_dist
from verify import kinds

SHORT = 8  # half of the drawn runs are at most this much longer than their minimum
POOL_ROUNDS = 24  # rounds of boundary endings drawn for the pools of contexts()


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


@functools.cache
def runs(n_tok: int, lo: int, hi: int) -> st.SearchStrategy[list[int]]:
    """Random token runs of ``lo..hi`` tokens, drawn as (length, seed): half at most
    ``SHORT`` longer than ``lo``, half over the whole range."""
    short = st.integers(lo, min(hi, lo + SHORT))
    lengths = st.one_of(short, st.integers(lo, hi)) if hi > lo + SHORT else short

    def tokens(drawn: tuple[int, int]) -> list[int]:
        n, seed_ = drawn
        return np.random.default_rng(seed_).integers(0, n_tok, size=n).tolist()

    return st.tuples(lengths, st.integers(0, 2**32 - 1)).map(tokens)


def long_strings(spec: Spec, min_size: int = 0) -> st.SearchStrategy[list[int]]:
    """Random contexts of ``min_size`` to ``max_len`` tokens, long as often as short."""
    return runs(len(spec.vocab), min(min_size, spec.max_len), spec.max_len)


def repeated(spec: Spec, max_half: int | None = None):
    """Repeated random sequences ``s + s`` (the classic induction probe) after a random
    prefix, so the first copy sits anywhere, late positions included."""
    half = spec.max_len // 2 if max_half is None else min(max_half, spec.max_len // 2)

    @st.composite
    def drawn(draw):
        """A half, then a prefix in the room it leaves."""
        s = draw(random_strings(spec, 1, half))
        return draw(runs(len(spec.vocab), 0, spec.max_len - 2 * len(s))) + s + s

    return drawn()


def _among(ids) -> st.SearchStrategy[int]:
    return st.sampled_from(sorted(ids))


def _built(spec: Spec, rule_id: int, max_prefix: int) -> st.SearchStrategy[list[int]]:
    """A context whose last position satisfies rule ``rule_id``'s condition.

    The strategies are built once, not on every draw (building and validating them was
    a fifth of the drawing time); the draws are the same, in the same order.
    """
    rule = spec.rules[rule_id]
    prefixes = functools.cache(lambda room: runs(len(spec.vocab), 0, room))
    tail_of = kinds.of(rule).tail(rule, spec)

    @st.composite
    def built(draw):
        """The rule's condition after a random prefix."""
        tail = tail_of(draw)
        room = max(0, min(max_prefix, spec.max_len - len(tail)))
        return (draw(prefixes(room)) + tail)[-spec.max_len :]

    return built()


@functools.cache
def boundary_pools(spec: Spec) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Per rule, the boundary endings (:func:`specs.nearmiss.boundary_endings`, drawn
    with a fixed seed) at which that rule fires, shortest first."""
    rng = np.random.default_rng(0)
    pools: dict[str, set[tuple[int, ...]]] = {name: set() for name in spec.rule_names()}
    for _ in range(POOL_ROUNDS):
        for e in boundary_endings(spec, rng):
            pools[fired(spec, e)].add(tuple(e))
    return {name: tuple(sorted(p, key=lambda e: (len(e), e))) for name, p in pools.items()}


def _near(spec: Spec, rule: str, max_prefix: int) -> st.SearchStrategy[list[int]] | None:
    """A boundary ending at which ``rule`` fires, after a random prefix (None: no pool)."""
    pool = boundary_pools(spec)[rule]
    if not pool:
        return None
    prefixes = functools.cache(lambda room: runs(len(spec.vocab), 0, room))

    @st.composite
    def near(draw):
        """A pooled ending after a prefix."""
        e = list(draw(st.sampled_from(pool)))
        return draw(prefixes(max(0, min(max_prefix, spec.max_len - len(e))))) + e

    return near()


def contexts(
    spec: Spec, rule: str | None = None, not_rule: str | None = None, max_prefix: int | None = None
):
    """Contexts where ``rule`` fires (built to make it hold, or at a boundary of some
    rule's condition where it is ``rule`` that fires) and/or ``not_rule`` does not.
    Prefixes run up to ``max_prefix`` tokens (default: ``max_len``).

    Raises:
        CraftError: an unknown rule name.
    """
    room = spec.max_len if max_prefix is None else max_prefix
    if rule is None or rule == "start":
        base = (
            st.just([])
            if rule == "start"
            else runs(len(spec.vocab), 0, min(room + 4, spec.max_len))
        )
    else:
        base = _built(spec, _rule_id(spec, rule), room)
        near = _near(spec, rule, room)
        base = base if near is None else st.one_of(base, near)
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
