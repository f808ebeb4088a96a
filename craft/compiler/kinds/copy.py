"""Copy rules: at a cue, copy the token ``offset`` positions back.

A copy rule ``(cue, offset)`` fires at ``t`` when ``x[t] in cue`` and ``t - offset >= 1``
(:mod:`specs.kinds.copy`); its next token is ``x[t - offset]`` with probability 1. One
head per rule, keyed on positions: it attends from ``t`` to ``t - offset`` when the rule
fires and to BOS otherwise, and writes ``copy[r]:*``, which the unembedding boosts like
induction's. The analysis reads it with no anchor (any token) and ``window = (offset,
offset)``: it looks exactly ``offset`` back, and a token stands there exactly when
``t - offset >= 1``. Standard and tensor families; the compact compiler refuses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from craft.compiler.analysis import Analysis, RuleInfo
from craft.compiler.compact import heads as H
from craft.compiler.compact.common import HeadPlan, unsupported
from craft.compiler.conditions import Condition, counts
from craft.compiler.kinds.base import Band, Component, Reading, RuleKind, named
from craft.compiler.kinds.shared import gates_need_products, ungated
from craft.compiler.primitives import HeadCircuit, tok
from craft.models.components import ComponentKind, Sublayer
from craft.models.layout import BOS_DIR, ONE, Direction, Layout
from specs.errors import CraftError
from specs.model import Copy

if TYPE_CHECKING:
    from craft.compiler.constants import Constants

TARGET, BOS, NOCUE, GATE = (
    "copy target C",
    "copy BOS B",
    "copy non-cue G",
    "copy gate K",
)


@dataclass(frozen=True)
class CopyHead(Component):
    """Head attending from a cue at ``t`` to ``t - offset`` (BOS when the rule does not fire)."""

    kind: ClassVar[ComponentKind] = ComponentKind.COPY
    band: ClassVar[Band] = Band.OUTPUT

    rule: str
    offset: int
    gates: tuple[str, ...]
    gate_factor: tuple[tuple[Direction, float], ...] = ()  # tensor, exact: [cue][no gate]
    name: str = ""
    sublayer: Sublayer = "attn"

    def rule_names(self) -> tuple[str, ...]:
        return (self.rule,)

    def reads(self, an: Analysis) -> set[Direction]:
        fires = {Direction("fire", n) for n in self.gates}
        return fires | {d for d, _ in self.gate_factor if d != ONE}

    def writes(self, an: Analysis) -> set[Direction]:
        return {Direction(f"copy[{self.rule}]", None)}

    def residual(self, an: Analysis) -> tuple[Direction, ...]:
        return tuple(Direction(f"copy[{self.rule}]", t) for t in an.spec.vocab.tokens)

    def circuits(self, an: Analysis, k: Constants, tensor: bool) -> HeadCircuit:
        return copy_head(self, an, k, tensor)

    def unembed(self, an: Analysis, k: Constants, w_u: np.ndarray, layout: Layout) -> None:
        """``copy[r]:v`` -> ``C_r`` on v (as induction)."""
        for v, name in enumerate(an.spec.vocab.tokens):
            w_u[layout.index(Direction(f"copy[{self.rule}]", name)), v] = k.boost[self.rule]


def copy_head(c: CopyHead, an: Analysis, k: Constants, tensor: bool) -> HeadCircuit:
    """Copy ``x[t - offset]`` when ``x[t]`` is in the (effective) cue and ``t > offset``.

    Standard (softmax over keys ``s <= t``): score
    ``C [s = t - offset] + (B + G [x_t not in cue] + K sum_g fire:g) [s = 0]``, the first
    term one ``pos:t -> pos:t-offset`` pair per query position ``t > offset``. With
    ``L = M + ln n + ln C_max`` (as the previous-token head), ``B = L`` and
    ``C = G = K = 2 L``, the intended key beats every other by at least ``L``:

    * cue, ``t > offset``, no gate fires: ``t - offset`` scores ``2L``, BOS ``L``, the
      rest 0;
    * ``x_t`` not in the cue, ``t > offset``: BOS scores ``>= 3L``, ``t - offset``
      ``2L``, the rest 0;
    * a gate (a non-deterministic higher rule that can fire here) fires: BOS ``>= 3L``,
      ``t - offset`` ``2L``;
    * ``t <= offset``: no positional term; BOS ``>= L``, the rest 0.

    So the weight off the intended key is at most ``n e^-L = e^-M / C_max``. Every key
    writes ``copy[r]:*`` with a one-hot of norm <= 1 (BOS writes nothing), and the
    unembedding reads it with ``C_r <= C_max``, so each logit is off by at most ``e^-M``:
    one of the leak terms :func:`~craft.compiler.constants.derive` charges every component.
    A score error ``delta`` (the gate's ``fire:g`` error, a derived position code) cuts
    each margin by at most ``2 delta``, far below the slack ``ln C_max``, ``ln n``.
    ``K = 2L <= C_max`` (``C_max`` includes induction's gate weight, at least
    ``4 (M + ln n) + M``, so this holds while ``C_max <= n e^(3M/2)``), so ``fire:g``'s
    error, kept below ``e^-M / C_max`` upstream, moves the score by at most ``e^-M``.

    Tensor (``pattern = (q1.k1)(q2.k2)``, no softmax): factor 1 the same shift table with
    weight 1, factor 2 ``[x_t in cue] - sum_g fire:g`` on any non-BOS key (``one``), so
    the pattern is exactly ``[s = t - offset][x_t in cue][no gate]`` when every gate's cue
    lies inside the copy's cue (a gate firing elsewhere would give ``-1``: refused) and
    gates fire one at a time (a stated condition). In the exact mode, when gates count
    anchors or can fire together, factor 2 is instead the product tree's ``[x_t in
    cue][no gate fires]`` (:func:`~craft.compiler.kinds.shared.ungated`): exact, no
    condition, no refusal. OV: ``tok:v -> copy[r]:v``.
    """
    r = an.info(c.rule)
    vocab = an.spec.vocab.tokens
    max_len = an.spec.max_len
    gate = [Direction("fire", g) for g in c.gates]
    cue = sorted(r.cue)
    ov = [
        ({tok(v, an): 1.0}, {Direction(f"copy[{r.name}]", vocab[v]): 1.0})
        for v in range(len(vocab))
    ]
    w = 1.0 if tensor else k.scores[TARGET]
    shift = [
        ({Direction("pos", t): w}, {Direction("pos", t - c.offset): 1.0})
        for t in range(c.offset + 1, max_len + 1)
    ]
    if tensor and c.gate_factor:
        return HeadCircuit(c.name, shift, ov, [(dict(c.gate_factor), {ONE: 1.0, BOS_DIR: 1.0})])
    if tensor:
        for g in c.gates:
            if not an.info(g).cue <= r.cue:
                raise CraftError(
                    f"the tensor family cannot switch copy rule {r.name} off where {g} fires "
                    "on a token outside its cue",
                    where=f"rule {r.name}",
                    fix="use --family standard, or drop --layers (the exact gate takes more)",
                )
        factor2 = {**{tok(v, an): 1.0 for v in cue}, **dict.fromkeys(gate, -1.0)}
        return HeadCircuit(c.name, shift, ov, [(factor2, {ONE: 1.0, BOS_DIR: 1.0})])
    nocue = {tok(v, an): k.scores[NOCUE] for v in range(len(vocab)) if v not in r.cue}
    query = {ONE: k.scores[BOS], **nocue, **dict.fromkeys(gate, k.scores[GATE])}
    return HeadCircuit(c.name, [*shift, (query, {BOS_DIR: 1.0})], ov)


class CopyKind(RuleKind):
    name = "copy"
    rule = Copy
    copies = True

    def read(self, rule: Copy) -> Reading:
        """Cue ``cue``, no anchor (any token), looking exactly ``offset`` back."""
        return Reading(rule.cue, None, (rule.offset, rule.offset), None)

    def max_count(self, r: RuleInfo, max_len: int) -> float:
        """Its copy coordinate is a one-hot: at most 1 (tensor family: the pattern is 0/1)."""
        return 1.0

    def holds(self, r: RuleInfo, ctx: list[int]) -> bool:
        return len(ctx) > r.window[0]

    def implies(self, a: RuleInfo, b: RuleInfo, on: frozenset[int]) -> bool:
        """A copy rule firing implies another copy rule with the same offset and a cue
        holding it (on ``on``)."""
        return b.rule_kind is self and b.window == a.window and (a.cue & on) <= b.cue

    def rule_components(self, r: RuleInfo, an: Analysis) -> list[Component]:
        """Its head; in the tensor family's exact mode, first the product tree of
        ``[x_t in cue][no gate fires]`` when gates count or can fire together."""
        gates = an.gates(r)
        names = tuple(g.name for g in gates)
        outside = an.exact_tensor and any(not g.cue <= r.cue for g in gates)
        if not (gates_need_products(an, gates) or outside):
            return [named(CopyHead(r.name, r.window[0], names), f"copy:{r.name}")]
        cue = {tok(v, an): 1.0 for v in sorted(r.cue)}
        comps, on = ungated(an, f"ungated:{r.name}", r.name, [cue], gates)
        head = CopyHead(r.name, r.window[0], names, tuple(on.items()))
        return [*comps, named(head, f"copy:{r.name}")]

    def scores(self, family: str, margin: float, n: int, c_max: float) -> dict[str, float]:
        """``L = M + ln n + ln C_max``; ``B = L``, ``C = G = K = 2L`` (:func:`copy_head`;
        the tensor family has no softmax: all 0)."""
        if family != "standard":
            return dict.fromkeys((TARGET, BOS, NOCUE, GATE), 0.0)
        big = margin + math.log(n) + math.log(c_max)
        return {TARGET: 2 * big, BOS: big, NOCUE: 2 * big, GATE: 2 * big}

    def tensor_conditions(self, r: RuleInfo, an: Analysis, earliest: bool) -> list[Condition]:
        """Its gates must not fire together and must each see one anchor (as induction)."""
        gates = an.gates(r)
        if an.exact_tensor:  # gates through a product tree (rule_components)
            return []
        out = []
        for a, b in combinations(gates, 2):
            if an.can_cofire(a, b):
                out.append(Condition("not-together", (a.name, b.name)))
        return out + [Condition("single-anchor", (g.name,)) for g in gates if counts(an, g)]

    def compact_heads(self, rules: list[RuleInfo], an: Analysis) -> list[HeadPlan]:
        """One layer-0 head per rule (positions and tokens only); a gate (a higher
        non-deterministic rule that can fire with it) is not built compactly: refused."""
        for r in rules:
            if an.gates(r):
                raise unsupported(f"copy {r.name} gated by {an.gates(r)[0].name}")
        return [HeadPlan(f"copy:{r.name}", ComponentKind.COPY.value, 0, (r.name,)) for r in rules]

    def compact_head(self, an, codes, pf, hp, m, boost):
        """:func:`craft.compiler.compact.heads.copy`; it reads exact class indicators and
        exact positions, so no collision (no interference record)."""
        r = an.info(hp.rules[0])
        vocab = range(len(an.spec.vocab))
        cue = codes.cls_set(sorted(r.cue))
        other = codes.cls_set(v for v in vocab if v not in r.cue)
        ov = H.copied_token_ov(codes, boost[r.name])
        return H.copy(hp.name, codes, pf, r.window[0], cue, other, m, ov), None

    def group(self, rule) -> str:
        return "copy"


COPY = CopyKind()
