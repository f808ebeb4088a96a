"""Contexts built to make a given rule's condition hold at their last position.

Random filler comes from a seeded numpy Generator; the rule named is the one whose
condition is *made* to hold, but a higher-priority rule may still fire first (the
ground truth decides), which is exactly what exactness tests want to see as well.
"""

from __future__ import annotations

import numpy as np

from specs.model import Bigram, Induction, SkipBigram, Spec, Trigram


def _pick(rng: np.random.Generator, ids) -> int:
    ids = sorted(ids)
    return int(ids[rng.integers(len(ids))])


def targeted(spec: Spec, rule_id: int, rng: np.random.Generator) -> list[int]:
    """One context (token ids after BOS) whose last position satisfies rule ``rule_id``."""
    v = len(spec.vocab)
    rule = spec.rules[rule_id]
    if isinstance(rule, Bigram):
        tail = [_pick(rng, rule.keys)]
    elif isinstance(rule, Trigram):
        tail = [_pick(rng, rule.first), _pick(rng, rule.second)]
    elif isinstance(rule, SkipBigram):
        lo, hi = rule.window
        d = int(rng.choice([lo, hi, int(rng.integers(lo, hi + 1))]))
        tail = [
            _pick(rng, rule.anchor),
            *rng.integers(v, size=d - 1).tolist(),
            _pick(rng, rule.cue),
        ]
    elif isinstance(rule, Induction):
        x = _pick(rng, rule.on)
        gap = int(rng.integers(0, max(1, spec.max_len // 4)))
        tail = [x, *rng.integers(v, size=1 + gap).tolist(), x]
    else:
        raise TypeError(type(rule).__name__)
    tail = tail[-spec.max_len :]
    room = spec.max_len - len(tail)
    prefix = rng.integers(v, size=int(rng.integers(0, room + 1))).tolist() if room else []
    return [int(t) for t in prefix + tail]


def targeted_batch(spec: Spec, rng: np.random.Generator, per_rule: int) -> list[list[int]]:
    """``per_rule`` targeted contexts for every rule, in rule order."""
    return [targeted(spec, i, rng) for i in range(len(spec.rules)) for _ in range(per_rule)]
