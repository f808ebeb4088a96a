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


@st.composite
def _built(draw, spec: Spec, rule_id: int, max_prefix: int):
    """A context whose last position satisfies rule ``rule_id``'s condition."""
    rule = spec.rules[rule_id]
    any_token = st.integers(0, len(spec.vocab) - 1)
    if isinstance(rule, Bigram):
        tail = [draw(_among(rule.keys))]
    elif isinstance(rule, Trigram):
        tail = [draw(_among(rule.first)), draw(_among(rule.second))]
    elif isinstance(rule, SkipBigram):
        lo, hi = rule.window
        gap = draw(st.lists(any_token, min_size=lo - 1, max_size=hi - 1))
        tail = [draw(_among(rule.anchor)), *gap, draw(_among(rule.cue))]
    elif isinstance(rule, Induction):
        x = draw(_among(rule.on))
        tail = [x, *draw(st.lists(any_token, min_size=1, max_size=8)), x]
    else:
        raise TypeError(type(rule).__name__)
    room = max(0, min(max_prefix, spec.max_len - len(tail)))
    return (draw(st.lists(any_token, max_size=room)) + tail)[-spec.max_len :]


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
