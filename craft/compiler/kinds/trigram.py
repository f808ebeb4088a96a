"""Trigram rules ``(A, B) -> next``: a detector with anchor ``A``, cue ``B``, window 1.

One-hot: an MLP unit ANDs ``prev:*`` (the previous-token head) with ``tok:*`` into
``fire:r``. Compact: deterministic trigrams share a head attending to its own position
when the pair matches; a non-deterministic one gets a readout head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from craft.compiler.analysis import Analysis, RuleInfo
from craft.compiler.compact import heads as H
from craft.compiler.compact.codes import Separation
from craft.compiler.compact.common import (
    HeadPlan,
    Interference,
    check_lower,
    collision,
    interference,
    unsupported,
    write,
)
from craft.compiler.kinds.base import Component, Reading, named
from craft.compiler.kinds.shared import DetectorKind, fire_boost
from craft.compiler.primitives import HeadCircuit, UnitCircuit, ind, tok
from craft.models.components import ComponentKind, Sublayer
from craft.models.layout import ONE, Direction, Layout
from specs.model import Trigram

if TYPE_CHECKING:
    from craft.compiler.constants import Constants


@dataclass(frozen=True)
class TrigramAnd(Component):
    """MLP unit: ``fire:r = [x[t-1] in A] AND [x[t] in B]`` from ``prev:*`` and ``tok:*``."""

    kind: ClassVar[ComponentKind] = ComponentKind.TRIGRAM_AND

    rule: str
    name: str = ""
    sublayer: Sublayer = "mlp"

    def rule_names(self) -> tuple[str, ...]:
        return (self.rule,)

    def reads(self, an: Analysis) -> set[Direction]:
        return {Direction("prev", None)}

    def writes(self, an: Analysis) -> set[Direction]:
        return {Direction("fire", self.rule)}

    def circuits(self, an: Analysis, k: Constants, tensor: bool) -> list[UnitCircuit]:
        return trigram_and(an.info(self.rule), an, tensor)

    def unembed(self, an: Analysis, k: Constants, w_u: np.ndarray, layout: Layout) -> None:
        fire_boost(an.info(self.rule), k, w_u, layout)


def trigram_and(r: RuleInfo, an: Analysis, tensor: bool) -> list[UnitCircuit]:
    """``fire:r = [x[t-1] in A] AND [x[t] in B]``.

    Standard: ``relu([prev in A] + [x_t in B] - 1)`` is 1 iff both hold (both indicators
    are 0/1 up to the prev head's error). Tensor: ``[prev in A] * [x_t in B]`` exactly.
    """
    prev = ind([Direction("prev", an.spec.vocab.tokens[v]) for v in r.anchor])
    cur = ind([tok(v, an) for v in r.cue])
    out = {Direction("fire", r.name): 1.0}
    if tensor:
        return [UnitCircuit(f"and:{r.name}", prev, out, cur)]
    return [UnitCircuit(f"and:{r.name}", {**prev, **cur, ONE: -1.0}, out)]


# -- compact ---------------------------------------------------------------------------
def _trigram(an, codes, pf, hp, m, boost) -> tuple[HeadCircuit, Interference | None]:
    rules = [an.info(n) for n in hp.rules]
    by_anchor: dict[frozenset, list] = {}
    for r in rules:
        by_anchor.setdefault(r.anchor, []).append(r)
    pairs = [
        (codes.cls_set(set().union(*(r.cue for r in rs))), codes.prev_set(anchor))
        for anchor, rs in by_anchor.items()
    ]
    sep = Separation.worst(
        [codes.separation(codes.prev_set(anc), anc, codes.prev) for anc in by_anchor]
    )
    low, phi, high = sep.low, sep.phi, sep.high
    if low <= high:
        raise collision(hp.name, "a trigram's first token from another token")
    a = 2 * m / (low - high)
    out = []
    for r in rules:
        for c in sorted({codes.class_of[v] for v in r.cue}):
            out.append(({codes.cls(c): 1.0}, write(codes, r, boost)))
    circuit = H.trigram_head(
        hp.name, codes, pf, pairs, out, a, a * low - m, a * (phi - low) + 2 * m
    )
    return circuit, interference(an, hp, "previous token", sep)


def _readout(an, codes, pf, hp, m, boost) -> tuple[HeadCircuit, Interference | None]:
    r = an.info(hp.rules[0])
    sep = codes.separation(codes.prev_set(r.anchor), r.anchor, codes.prev)
    low, phi, high = sep.low, sep.phi, sep.high
    if low <= high:
        raise collision(hp.name, f"the first token of {r.name} from another token")
    a = 2 * m / (low - high)
    if a * (1 + low - phi) < 2 * m:
        raise collision(hp.name, f"the first token of {r.name} alone from the whole pair")
    out = [
        ({codes.cls(c): 1.0}, {codes.cls(c): -1.0})
        for c in sorted({codes.class_of[v] for v in r.cue})
    ]
    out.append((codes.one(), {Direction("read", r.name): 1.0}))
    cue, anchor = codes.cls_set(r.cue), codes.prev_set(r.anchor)
    circuit = H.readout_head(hp.name, codes, pf, cue, anchor, out, a, a * (1 + low) - m, m)
    return circuit, interference(an, hp, "previous token", sep)


def compact_trigram_heads(rules: list[RuleInfo], an: Analysis) -> list[HeadPlan]:
    """One trigram head per group of deterministic trigrams (each cue class in one rule
    of the group), then one readout head per non-deterministic trigram."""
    groups: list[list[RuleInfo]] = []
    for r in (r for r in rules if r.deterministic):
        check_lower(an, r)
        g = next((g for g in groups if not any(x.cue & r.cue for x in g)), None)
        (g.append(r) if g is not None else groups.append([r]))
    out = [
        HeadPlan(f"trigram{i}", "trigram-head", 1, tuple(r.name for r in g))
        for i, g in enumerate(groups)
    ]
    for r in (r for r in rules if not r.deterministic):
        if an.gates(r):
            raise unsupported(f"a readout of {r.name} gated by another non-deterministic rule")
        check_lower(an, r)
        out.append(HeadPlan(f"readout:{r.name}", "readout-head", 1, (r.name,)))
    return out


class TrigramKind(DetectorKind):
    name = "trigram"
    rule = Trigram
    label = "trigram"
    needs_prev = True

    def read(self, rule: Trigram) -> Reading:
        return Reading(rule.second, rule.first, (1, 1), rule.next)

    def rule_components(self, r: RuleInfo, an: Analysis) -> list[Component]:
        return [named(TrigramAnd(r.name), f"and:{r.name}")]

    def prev_sets(self, r: RuleInfo) -> list[frozenset[int]]:
        return [r.anchor]

    def compact_heads(self, rules: list[RuleInfo], an: Analysis) -> list[HeadPlan]:
        return compact_trigram_heads(rules, an)

    def compact_head(self, an, codes, pf, hp, m, boost):
        build = _readout if hp.kind == "readout-head" else _trigram
        return build(an, codes, pf, hp, m, boost)


TRIGRAM = TrigramKind()
