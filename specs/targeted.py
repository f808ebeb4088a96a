"""Targeted contexts: random contexts at which a chosen rule fires.

Sampled data exercises rare rules rarely (a token trigram may fire once in a thousand
positions). :func:`contexts_for_rule` builds contexts that end the way the rule needs
(a key token, a trigram pair, an anchor inside the window then the cue, a repeated
token, ...: each kind's ``targeted_ending`` hook, :mod:`specs.kinds`) after a random
prefix, and keeps those at which the rule really is the first to fire according to
:func:`specs.truth.next_dist_exact`.
"""

from __future__ import annotations

import numpy as np

from specs.errors import CraftError
from specs.kinds import kind_of
from specs.model import Spec
from specs.truth import next_dist_exact


def contexts_for_rule(
    spec: Spec,
    rule_id: int,
    rng: np.random.Generator,
    n: int,
    max_prefix: int = 24,
) -> list[tuple[int, ...]]:
    """``n`` contexts (token ids after BOS) at which rule ``rule_id`` fires.

    Args:
        spec: a resolved spec.
        rule_id: index into ``spec.rule_names()`` (the start rule gives empty contexts).
        rng: numpy Generator (the result depends only on its state).
        n: number of contexts wanted.
        max_prefix: longest random prefix before the rule's ending.

    Returns:
        ``n`` contexts, each at most ``spec.max_len`` tokens long.

    Raises:
        CraftError: an unknown rule id, or a rule that fires too rarely to find ``n``
            contexts (usually a shadowed rule).
    """
    if not 0 <= rule_id <= spec.start_rule_id:
        raise CraftError(
            f"rule id {rule_id} does not exist",
            where=spec.source or spec.name,
            fix=f"use a rule id in 0..{spec.start_rule_id}",
        )
    if rule_id == spec.start_rule_id:
        return [()] * n
    rule, vocab_size = spec.rules[rule_id], len(spec.vocab)
    kind = kind_of(rule)
    found: list[tuple[int, ...]] = []
    tries = 0
    while len(found) < n and tries < 200 * max(n, 1):
        tries += 1
        ending = kind.targeted_ending(spec, rule, rng)
        room = min(max_prefix, spec.max_len - len(ending))
        if room < 0:
            continue
        prefix = rng.integers(0, vocab_size, size=int(rng.integers(0, room + 1))).tolist()
        context = tuple(prefix + ending)
        if next_dist_exact(spec, context)[1] == rule_id:
            found.append(context)
    if len(found) < n:
        raise CraftError(
            f"found only {len(found)} of {n} contexts where rule {rule.name!r} fires",
            where=spec.source or spec.name,
            fix="check that earlier rules do not shadow it (loading warns about that)",
        )
    return found
