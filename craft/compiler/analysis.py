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

What is particular to a rule kind (how it reads as a detector, its largest feature value,
when its condition holds, what it implies) is a hook of its kind object
(:mod:`craft.compiler.kinds`); ``RuleInfo.kind`` names it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from craft.compiler.kinds import kind_named, kind_of
from specs.model import Dist, Spec

if TYPE_CHECKING:
    from craft.compiler.kinds.base import RuleKind


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
        rule: the spec rule itself (for kinds whose condition needs more than the above).
    """

    index: int
    name: str
    kind: str  # its kind's name (:func:`craft.compiler.kinds.kind_named`)
    cue: frozenset[int]
    anchor: frozenset[int] | None
    window: tuple[int, int] | None
    next: Dist | None
    rule: object = field(default=None, compare=False, repr=False)

    @property
    def rule_kind(self) -> RuleKind:
        """Its kind object (:mod:`craft.compiler.kinds`): every kind-specific hook."""
        return kind_named(self.kind)

    @property
    def deterministic(self) -> bool:
        return self.next is None or self.next.is_deterministic

    @property
    def target(self) -> int | None:
        return self.next.support[0] if self.next is not None and self.deterministic else None

    def max_count(self, max_len: int) -> float:
        """Largest value its fire feature takes in the tensor family (its kind's
        :meth:`~craft.compiler.kinds.base.RuleKind.max_count`)."""
        return self.rule_kind.max_count(self, max_len)

    def holds(self, ctx: list[int]) -> bool:
        """Whether its condition holds at the last position of ``ctx`` (ids after BOS)."""
        if not ctx or ctx[-1] not in self.cue:
            return False
        return self.rule_kind.holds(self, ctx)

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
    exact_tensor: bool = False  # tensor family: readouts take exact products (extra layers)

    def info(self, name: str) -> RuleInfo:
        return next(r for r in self.rules if r.name == name)

    def can_cofire(self, a: RuleInfo, b: RuleInfo) -> bool:
        if not a.cue & b.cue:
            return False
        if a.window == (1, 1) and b.window == (1, 1) and None not in (a.anchor, b.anchor):
            return bool(a.anchor & b.anchor)  # one x[t-1] (no anchor: any token)
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
    return a.rule_kind.implies(a, b, on)


def analyse(spec: Spec) -> Analysis:
    """Resolve priorities: effective direct rows and effective cues of the other rules.

    A rule's kind gives the rows it puts on the direct path
    (:meth:`~craft.compiler.kinds.base.RuleKind.direct`: bigrams) and how it reads as a
    detector (:meth:`~craft.compiler.kinds.base.RuleKind.read`: every other kind).
    """
    v = len(spec.vocab)
    first_direct = [len(spec.rules)] * v
    row: list[Dist | None] = [None] * v
    for i, rule in enumerate(spec.rules):
        for tok, dist in kind_of(rule).direct(rule):
            if row[tok] is None:
                row[tok], first_direct[tok] = dist, i
    if any(r is None for r in row):  # the loader rejects such specs; keep the stage total
        uniform = Dist.from_mass(v, dict.fromkeys(range(v), Fraction(1, v)))
        row = [r or uniform for r in row]
    infos, shadowed = [], []
    for i, rule in enumerate(spec.rules):
        kind = kind_of(rule)
        reading = kind.read(rule)
        if reading is None:  # on the direct path only
            continue
        live = frozenset(t for t in range(v) if first_direct[t] > i)
        cue, anchor, window = reading.cue & live, reading.anchor, reading.window
        info = RuleInfo(i, rule.name, kind.name, cue, anchor, window, reading.next, rule)
        if info.cue:
            infos.append(info)
        else:
            shadowed.append(rule.name)
    return Analysis(spec, tuple(infos), tuple(row) + (spec.start,), tuple(shadowed))


def log_probs(dist: Dist, gap: float) -> np.ndarray:
    """Logits for ``dist``: ``ln q`` on the support, ``ln(min q) - gap`` elsewhere. [V]"""
    q = dist.array()
    sup = q > 0
    out = np.full_like(q, np.log(q[sup].min()) - gap)
    out[sup] = np.log(q[sup])
    return out
