"""Stage 1: spec -> analysis. What each rule needs once priorities are resolved.

Every non-bigram rule is read as a *detector* on the current token ``x[t]`` (its
``cue``): trigram ``(A, B)`` is a skip-bigram with anchor ``A``, cue ``B`` and window
``[1, 1]``; induction's cue is its ``on`` set. Priorities are then resolved statically:

* A bigram covers ``x[t]`` whatever came before, so a non-bigram rule below the first
  bigram covering token ``v`` can never fire at ``x[t] = v``: its *effective* cue
  drops ``v``. The direct path holds, for every token, the row of the first bigram
  covering it (the spec loader guarantees every token is covered).
* Two rules can fire together only if their effective cues intersect (and, for two
  window-1 detectors, their anchors intersect: ``x[t-1]`` is one token).
* ``a`` implies ``b`` when a's anchor, cue and window lie inside b's.
* A rule's *gates* are the non-deterministic higher rules that can fire with it,
  minus those implied by another gate (if the implied one fires, so does the other).
  Deterministic higher rules need no gate: their logit boost dominates (see constants).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np

from specs.model import Bigram, Dist, Induction, SkipBigram, Spec, Trigram

Kind = Literal["trigram", "skip_bigram", "induction"]


RATIO = 3.0
"""Tensor-family induction weighs a match at key position ``s`` by ``recency(s) =
RATIO**(max_len - s)``. With ``RATIO >= 3`` every later match together weighs at most
half the earliest: ``sum_{j >= 1} RATIO**-j = 1 / (RATIO - 1) <= 1/2``."""


def recency(s: int, max_len: int) -> float:
    """The weight of a match at key position ``s`` (1 at ``max_len``, growing backwards)."""
    return RATIO ** (max_len - s)


@dataclass(frozen=True)
class RuleInfo:
    """A non-bigram rule after priority resolution.

    Attributes:
        index: position in the spec's rule list (its priority; lower fires first).
        cue: effective current-token set (tokens where it can fire and beat every bigram).
        anchor: tokens it looks back for (None for induction).
        window: (lo, hi) distance back to the anchor (trigram: (1, 1)).
        next: its distribution (None for induction, whose output is a copied token).
    """

    index: int
    name: str
    kind: Kind
    cue: frozenset[int]
    anchor: frozenset[int] | None
    window: tuple[int, int] | None
    next: Dist | None

    @property
    def deterministic(self) -> bool:
        return self.next is None or self.next.is_deterministic

    @property
    def target(self) -> int | None:
        return self.next.support[0] if self.next is not None and self.deterministic else None

    def max_count(self, max_len: int) -> float:
        """Largest value its fire feature takes in the tensor family: a detector's count of
        anchors (not an OR), or induction's copy coordinate, the sum of the recency
        weights of every match, at most ``sum_s RATIO**(max_len - s) = (RATIO**max_len -
        1) / (RATIO - 1)`` (:func:`recency`)."""
        if self.kind == "induction":
            return (RATIO**max_len - 1) / (RATIO - 1)
        lo, hi = self.window
        return hi - lo + 1

    def holds(self, ctx: list[int]) -> bool:
        """Whether its condition holds at the last position of ``ctx`` (ids after BOS)."""
        t = len(ctx)
        if t == 0 or ctx[-1] not in self.cue:
            return False
        if self.kind == "induction":
            return ctx[-1] in ctx[:-1]
        lo, hi = self.window
        return any(ctx[t - d - 1] in self.anchor for d in range(lo, min(hi, t - 1) + 1))

    def anchor_count(self, ctx: list[int]) -> int:
        t = len(ctx)
        lo, hi = self.window
        return sum(ctx[t - d - 1] in self.anchor for d in range(lo, min(hi, t - 1) + 1))


@dataclass(frozen=True)
class Analysis:
    """Resolved priorities of a spec. ``rules`` holds the non-bigram rules that can fire."""

    spec: Spec
    rules: tuple[RuleInfo, ...]
    direct: tuple[Dist, ...]  # [V + 1]: effective bigram row per token, then the start row
    shadowed: tuple[str, ...]  # non-bigram rules that can never fire

    def info(self, name: str) -> RuleInfo:
        return next(r for r in self.rules if r.name == name)

    def can_cofire(self, a: RuleInfo, b: RuleInfo) -> bool:
        if not a.cue & b.cue:
            return False
        if a.window == (1, 1) and b.window == (1, 1):
            return bool(a.anchor & b.anchor)
        return True

    def lower_cofiring(self, r: RuleInfo) -> tuple[RuleInfo, ...]:
        return tuple(x for x in self.rules if x.index > r.index and self.can_cofire(r, x))

    def gates(self, r: RuleInfo) -> tuple[RuleInfo, ...]:
        """Non-deterministic higher rules that can fire with ``r``, minimised by implication."""
        cands = [h for h in self.rules if h.index < r.index and not h.deterministic]
        cands = [h for h in cands if self.can_cofire(h, r)]
        return tuple(
            h for h in cands if not any(g is not h and implies(h, g, r.cue) for g in cands)
        )


def implies(a: RuleInfo, b: RuleInfo, on: frozenset[int]) -> bool:
    """Whether ``a`` firing at a token of ``on`` implies ``b`` fires there too."""
    if a.kind == "induction" or b.kind == "induction":
        return a.kind == b.kind and (a.cue & on) <= b.cue
    return (
        (a.cue & on) <= b.cue
        and a.anchor <= b.anchor
        and b.window[0] <= a.window[0]
        and a.window[1] <= b.window[1]
    )


def analyse(spec: Spec) -> Analysis:
    """Resolve priorities: effective bigram rows and effective cues of the other rules."""
    v = len(spec.vocab)
    first_bigram = [len(spec.rules)] * v
    row: list[Dist | None] = [None] * v
    for i, rule in enumerate(spec.rules):
        if isinstance(rule, Bigram):
            for tok, dist in rule.table:
                if row[tok] is None:
                    row[tok], first_bigram[tok] = dist, i
    if any(r is None for r in row):  # the loader rejects such specs; keep the stage total
        uniform = Dist.from_mass(v, dict.fromkeys(range(v), Fraction(1, v)))
        row = [r or uniform for r in row]
    infos, shadowed = [], []
    for i, rule in enumerate(spec.rules):
        if isinstance(rule, Bigram):
            continue
        info = _info(i, rule, frozenset(t for t in range(v) if first_bigram[t] > i))
        if info.cue:
            infos.append(info)
        else:
            shadowed.append(rule.name)
    return Analysis(spec, tuple(infos), tuple(row) + (spec.start,), tuple(shadowed))


def _info(i: int, rule, live: frozenset[int]) -> RuleInfo:
    if isinstance(rule, Trigram):
        return RuleInfo(i, rule.name, "trigram", rule.second & live, rule.first, (1, 1), rule.next)
    if isinstance(rule, SkipBigram):
        return RuleInfo(
            i, rule.name, "skip_bigram", rule.cue & live, rule.anchor, rule.window, rule.next
        )
    if isinstance(rule, Induction):
        return RuleInfo(i, rule.name, "induction", rule.on & live, None, None, None)
    raise TypeError(f"unknown rule type {type(rule).__name__}")


def log_probs(dist: Dist, gap: float) -> np.ndarray:
    """Logits for ``dist``: ``ln q`` on the support, ``ln(min q) - gap`` elsewhere. [V]"""
    q = dist.array()
    sup = q > 0
    out = np.full_like(q, np.log(q[sup].min()) - gap)
    out[sup] = np.log(q[sup])
    return out
