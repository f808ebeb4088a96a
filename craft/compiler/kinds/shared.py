"""What several rule kinds share: detector semantics, the previous-token head, readouts.

* :class:`DetectorKind`: a rule that fires when the current token is in its cue and an
  anchor stands ``lo..hi`` tokens back (trigram: ``[1, 1]``; skip-bigram: its window).
* :class:`PrevToken`: the layer-0 head copying ``x[t-1]`` into ``prev:*`` (read by
  trigrams and induction).
* :class:`Readout`: the MLP units giving any non-deterministic rule its exact
  distribution.

Notation as in :mod:`craft.compiler.primitives`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from craft.compiler.analysis import Analysis, RuleInfo, log_probs
from craft.compiler.conditions import Condition, count_harmless, counts
from craft.compiler.kinds.base import Band, Component, RuleKind, named
from craft.compiler.primitives import HeadCircuit, UnitCircuit, Vec, ind, tok
from craft.models.components import ComponentKind, Sublayer
from craft.models.layout import BOS_DIR, ONE, Direction, Layout

if TYPE_CHECKING:
    from craft.compiler.constants import Constants

PREV_SCORE = "prev-token score"


class DetectorKind(RuleKind):
    """A rule read as a detector: cue ``x[t]``, an anchor ``lo..hi`` tokens back."""

    fires = True
    label: ClassVar[str]  # its loss-curve group, before "(deterministic)"

    def max_count(self, r: RuleInfo, max_len: int) -> float:
        """Its fire feature counts the anchors in its window (tensor family: not an OR)."""
        lo, hi = r.window
        return hi - lo + 1

    def holds(self, r: RuleInfo, ctx: list[int]) -> bool:
        t = len(ctx)
        lo, hi = r.window
        return any(ctx[t - d - 1] in r.anchor for d in range(lo, min(hi, t - 1) + 1))

    def implies(self, a: RuleInfo, b: RuleInfo, on: frozenset[int]) -> bool:
        """``a``'s cue (on ``on``), anchor and window lie inside ``b``'s (a detector)."""
        return (
            b.anchor is not None
            and (a.cue & on) <= b.cue
            and a.anchor <= b.anchor
            and b.window[0] <= a.window[0]
            and a.window[1] <= b.window[1]
        )

    def tensor_conditions(self, r: RuleInfo, an: Analysis, earliest: bool) -> list[Condition]:
        """A non-deterministic detector's readout cannot be switched off by a gate in the
        same layer, and counts anchors unless a count is harmless
        (:func:`~craft.compiler.conditions.count_harmless`)."""
        if r.deterministic or an.exact_tensor:  # exact readouts (:func:`exact_readouts`)
            return []
        out = [Condition("not-together", (g.name, r.name)) for g in an.gates(r)]
        if counts(an, r) and not count_harmless(an, r):
            out.append(Condition("single-anchor", (r.name,)))
        return out

    def group(self, rule) -> str:
        how = "deterministic" if rule.next.is_deterministic else "distribution"
        return f"{self.label} ({how})"


def fire_boost(r: RuleInfo, k: Constants, w_u: np.ndarray, layout: Layout) -> None:
    """A deterministic detector's unembedding: ``fire:r`` -> ``C_r`` on its target."""
    if r.deterministic:
        w_u[layout.index(Direction("fire", r.name)), r.target] = k.boost[r.name]


# -- the previous-token head -----------------------------------------------------------
def prev_scores(family: str, margin: float, n: int, c_max: float) -> dict[str, float]:
    """The previous-token head's score ``A = M + ln n + ln C_max`` (:func:`prev_token`)."""
    standard = family == "standard"
    return {PREV_SCORE: margin + math.log(n) + math.log(c_max) if standard else 0.0}


@dataclass(frozen=True)
class PrevToken(Component):
    """Layer-0 head copying ``x[t-1]`` into ``prev:*``."""

    kind: ClassVar[ComponentKind] = ComponentKind.PREVIOUS_TOKEN
    band: ClassVar[Band] = Band.PREV

    name: str = "prev-token"
    sublayer: Sublayer = "attn"

    def writes(self, an: Analysis) -> set[Direction]:
        return {Direction("prev", None)}

    def residual(self, an: Analysis) -> tuple[Direction, ...]:
        return tuple(Direction("prev", t) for t in an.spec.vocab.tokens)

    def circuits(self, an: Analysis, k: Constants, tensor: bool) -> HeadCircuit:
        return prev_token(an, k, tensor)


def prev_token(an: Analysis, k: Constants, tensor: bool) -> HeadCircuit:
    """Copy ``x[t-1]`` into ``prev:*``.

    Standard: score ``A [s = t-1]`` (one term per query position ``pos:t -> pos:t-1``),
    0 elsewhere; the weight on ``t-1`` is ``>= 1/(1 + t e^-A)``, so every ``prev``
    coordinate is off by at most ``n e^-A``, and ``A = M + ln n + ln C_max`` keeps that
    times the largest weight reading it below ``e^-M``. Tensor: factor 1 is the same
    shift table with weight 1, factor 2 is ``1`` (``one`` or ``bos`` at the key), so the
    pattern is exactly ``[s = t-1]``. OV: ``tok:v -> prev:v``; BOS carries no ``tok``,
    so at ``t = 1`` the prev subspace stays 0.
    """
    a = 1.0 if tensor else k.scores[PREV_SCORE]
    qk = [
        ({Direction("pos", t): a}, {Direction("pos", t - 1): 1.0})
        for t in range(1, an.spec.max_len + 1)
    ]
    ov = [
        ({tok(v, an): 1.0}, {Direction("prev", an.spec.vocab.tokens[v]): 1.0})
        for v in range(len(an.spec.vocab))
    ]
    qk2 = [({ONE: 1.0}, {ONE: 1.0, BOS_DIR: 1.0})] if tensor else []
    return HeadCircuit("prev-token", qk, ov, qk2)


# -- readouts --------------------------------------------------------------------------
@dataclass(frozen=True)
class Readout(Component):
    """MLP units giving a non-deterministic rule its exact distribution.

    When the rule fires first they cancel the direct path (``-tok:v``) and the boosts of
    lower deterministic rules firing with it (``-fire:l``) and write ``read:r``.
    """

    kind: ClassVar[ComponentKind] = ComponentKind.READOUT
    band: ClassVar[Band] = Band.READ
    final: ClassVar[bool] = True

    rule: str
    gates: tuple[str, ...]
    cancels: tuple[str, ...]
    factor: tuple[tuple[Direction, float], ...] = ()  # tensor, exact: [r fires, no gate]
    name: str = ""
    sublayer: Sublayer = "mlp"

    def rule_names(self) -> tuple[str, ...]:
        return (self.rule,)

    def reads(self, an: Analysis) -> set[Direction]:
        fires = {Direction("fire", n) for n in (self.rule, *self.gates, *self.cancels)}
        return fires | {d for d, _ in self.factor if d != ONE}

    def writes(self, an: Analysis) -> set[Direction]:
        return {Direction("read", self.rule)}

    def residual(self, an: Analysis) -> tuple[Direction, ...]:
        return (Direction("read", self.rule),)

    def circuits(self, an: Analysis, k: Constants, tensor: bool) -> list[UnitCircuit]:
        return readout(self, an, tensor)

    def unembed(self, an: Analysis, k: Constants, w_u: np.ndarray, layout: Layout) -> None:
        """``read:r`` -> ``ln q_r``."""
        w_u[layout.index(Direction("read", self.rule))] = log_probs(an.info(self.rule).next, k.gap)


def readouts(an: Analysis) -> list[Component]:
    """One readout per non-deterministic rule, gated by its gates, cancelling the lower
    deterministic rules with a fire feature that can fire with it. With
    ``an.exact_tensor``, each readout first multiplies its factors exactly
    (:func:`exact_readouts`)."""
    if an.exact_tensor:
        return exact_readouts(an)
    out = []
    for r in an.rules:
        if not r.deterministic:
            gates = tuple(g.name for g in an.gates(r))
            out.append(named(Readout(r.name, gates, _cancels(an, r)), f"readout:{r.name}"))
    return out


def _cancels(an: Analysis, r: RuleInfo) -> tuple[str, ...]:
    return tuple(x.name for x in an.lower_cofiring(r) if x.deterministic and x.rule_kind.fires)


# -- exact tensor-family readouts --------------------------------------------------------
@dataclass(frozen=True)
class Products(Component):
    """Tensor family: bilinear MLP units ``(left . x)(right . x)``, each written to its own
    direction: one level of a product tree (:func:`product_tree`)."""

    kind: ClassVar[ComponentKind] = ComponentKind.PRODUCT
    band: ClassVar[Band] = Band.READ

    rule: str
    units: tuple[tuple[tuple[tuple[Direction, float], ...], ...], ...]  # (left, right, out)
    name: str = ""
    sublayer: Sublayer = "mlp"

    def rule_names(self) -> tuple[str, ...]:
        return (self.rule,)

    def reads(self, an: Analysis) -> set[Direction]:
        return {d for left, right, _ in self.units for d, _ in (*left, *right) if d != ONE}

    def writes(self, an: Analysis) -> set[Direction]:
        return {out[0][0] for _, _, out in self.units}

    def residual(self, an: Analysis) -> tuple[Direction, ...]:
        return tuple(out[0][0] for _, _, out in self.units)

    def circuits(self, an: Analysis, k: Constants, tensor: bool) -> list[UnitCircuit]:
        return [
            UnitCircuit(f"{self.name}:{i}", dict(left), dict(out), dict(right))
            for i, (left, right, out) in enumerate(self.units)
        ]


def product_tree(label: str, rule: str, factors: list[Vec]) -> tuple[list[Products], Vec]:
    """The exact product of linear ``factors`` in ``ceil(log2 len)`` bilinear MLP levels
    (pairs at each level; an odd one out is multiplied by ``one``), and the feature
    holding it (the factor itself when there is one)."""
    comps, level = [], 0
    while len(factors) > 1:
        level += 1
        units, nxt = [], []
        for i in range(0, len(factors), 2):
            right = factors[i + 1] if i + 1 < len(factors) else {ONE: 1.0}
            out = Direction(f"prod[{label}]", f"{level}.{i // 2}")
            units.append((tuple(factors[i].items()), tuple(right.items()), ((out, 1.0),)))
            nxt.append({out: 1.0})
        comps.append(named(Products(rule, tuple(units)), f"product:{label}:{level}"))
        factors = nxt
    return comps, factors[0]


def none_factors(fire: Direction, width: int) -> list[Vec]:
    """``1 - c / k`` for ``k = 1..width``, ``c`` the count in ``fire``, in ``0..width``:
    their product is 1 at ``c = 0`` and 0 at every ``c = 1..width`` (one factor
    vanishes), so it is exactly ``[c = 0]``, the NOT of the detector's OR."""
    return [{ONE: 1.0, fire: -1.0 / k} for k in range(1, width + 1)]


def tree_peak(width: int) -> float:
    """The largest value any node of the ``none`` tree of a count up to ``width`` takes
    (the magnitude its rounding is charged at): evaluated at every count 0..width."""
    peak = 1.0
    for c in range(width + 1):
        level = [1.0 - c / k for k in range(1, width + 1)]
        while len(level) > 1:
            pairs = zip(level[::2], [*level[1::2], 1.0], strict=False)
            level = [a * b for a, b in pairs]
            peak = max(peak, *(abs(x) for x in level))
    return peak


def readout_scale(an: Analysis, r: RuleInfo) -> float:
    """How large the values an exact readout of ``r`` computes with can be, relative to a
    0/1 feature (its rounding is charged at this multiple): its count when the count is
    harmless (it writes that many times), times the largest node of every ``none`` tree
    it reads (:func:`tree_peak`)."""
    max_len = an.spec.max_len
    trees = [g for g in an.gates(r) if counts(an, g)]
    scale = 1.0
    if counts(an, r):
        if count_harmless(an, r):
            scale = r.max_count(max_len)
        else:
            trees.append(r)
    peaks = [tree_peak(int(g.max_count(max_len))) for g in trees]
    return scale * max([1.0, *peaks])


def not_firing(an: Analysis, g: RuleInfo) -> tuple[list[Products], Vec]:
    """``[g does not fire]`` as a feature: ``1 - fire:g`` when g's fire is 0/1, the
    product tree of :func:`none_factors` over its count otherwise (components named by
    g, so every reader shares them: the plan keeps one of each)."""
    fire = Direction("fire", g.name)
    if not counts(an, g):
        return [], {ONE: 1.0, fire: -1.0}
    width = int(g.max_count(an.spec.max_len))
    return product_tree(f"none:{g.name}", g.name, none_factors(fire, width))


def ungated(
    an: Analysis, label: str, rule: str, factors: list[Vec], gates
) -> tuple[list[Products], Vec]:
    """``prod factors * prod_g [g does not fire]``, exactly, as one feature."""
    comps: list[Products] = []
    for g in gates:
        cs, vec = not_firing(an, g)
        comps += cs
        factors = [*factors, vec]
    cs, vec = product_tree(label, rule, factors)
    return comps + cs, vec


def gates_need_products(an: Analysis, gates) -> bool:
    """Tensor family, exact mode: whether ``1 - sum_g fire:g`` is not already exactly
    ``[no gate fires]`` (a gate counts anchors, or two gates can fire together)."""
    pairs = any(an.can_cofire(a, b) for i, a in enumerate(gates) for b in gates[i + 1 :])
    return an.exact_tensor and (pairs or any(counts(an, g) for g in gates))


def exact_readouts(an: Analysis) -> list[Component]:
    """Tensor family: readouts exact wherever the standard family's are.

    A tensor readout is a bilinear unit ``fire:r * [x_t = v]``; a detector's ``fire`` is
    a count ``c`` of anchors, not an OR, and a gate would need a third factor. Both are
    polynomials of higher degree, so they take more layers, not conditions:

    * ``[c >= 1] = 1 - prod_k (1 - c/k)`` over ``k = 1..W`` (``W`` the window: the count
      is at most ``W``): exact on ``0..W``, degree ``W``, so ``ceil(log2 W)`` bilinear
      levels (:func:`none_factors`, :func:`product_tree`). No polynomial of lower degree
      is 0 at 0 and 1 at 1..W (``p - 1`` has W roots), and a bilinear MLP level at most
      doubles the degree, so fewer levels cannot do it.
    * gated: ``[r fires] * prod_g [g does not fire]`` (each factor linear: ``1 - fire:g``
      for a trigram, the tree above for a counting gate), one product tree over the
      factors; so gates firing together switch the readout off exactly.

    The readout then multiplies the tree's output by ``[x_t = v]`` (and by ``fire:l`` for
    the cancels), as before. A rule whose count is harmless
    (:func:`~craft.compiler.conditions.count_harmless`) keeps its count.
    """
    comps: list[Component] = []
    out: list[Component] = []
    for r in an.rules:
        if r.deterministic:
            continue
        gates = an.gates(r)
        if counts(an, r) and not count_harmless(an, r):
            cs, none_r = not_firing(an, r)
            comps += cs
            fires = {ONE: 1.0, **{d: -w for d, w in none_r.items()}}
        else:
            fires = {Direction("fire", r.name): 1.0}
        cs, factor = ungated(an, f"read:{r.name}", r.name, [fires], gates)
        comps += cs
        names = tuple(g.name for g in gates)
        readout = Readout(r.name, names, _cancels(an, r), tuple(factor.items()))
        out.append(named(readout, f"readout:{r.name}"))
    return comps + out


def readout(c: Readout, an: Analysis, tensor: bool) -> list[UnitCircuit]:
    """Give rule r its exact distribution when it fires first.

    For each cue token v a unit ``[fire:r][x_t = v][no gate fires]`` writes
    ``read:r - tok:v`` (the unembedding maps ``read:r`` to ``ln q_r`` and ``tok:v`` to the
    direct-path row, which this removes); for each lower deterministic rule l that can
    fire with r a unit ``[fire:r][fire:l][no gate]`` writes ``-fire:l`` (removing l's
    boost). Standard: ``relu(fire:r + [x_t = v] - 1 - sum_g fire:g)``: a ReLU of 0/1
    features, exact up to their errors. Tensor: ``fire:r * [x_t = v]`` (no gating: a
    third factor would need another layer; the compiler states the condition instead),
    or with exact readouts ``factor * [x_t = v]``, ``factor`` the product tree's ``[r
    fires][no gate fires]`` (:func:`exact_readouts`).
    """
    r = an.info(c.rule)
    gate = ind([Direction("fire", g) for g in c.gates], -1.0)
    fire_r = dict(c.factor) if tensor and c.factor else {Direction("fire", r.name): 1.0}
    units = []
    for v in sorted(r.cue):
        out = {Direction("read", r.name): 1.0, tok(v, an): -1.0}
        units.append(
            _and(
                f"{c.name}:{an.spec.vocab.tokens[v]}", fire_r, {tok(v, an): 1.0}, gate, out, tensor
            )
        )
    for l_name in c.cancels:
        fire_l = {Direction("fire", l_name): 1.0}
        units.append(
            _and(
                f"{c.name}:cancel:{l_name}",
                fire_r,
                fire_l,
                gate,
                {Direction("fire", l_name): -1.0},
                tensor,
            )
        )
    return units


def _and(name: str, a: Vec, b: Vec, gate: Vec, out: Vec, tensor: bool) -> UnitCircuit:
    if tensor:
        return UnitCircuit(name, a, out, b)
    return UnitCircuit(name, {**a, **b, **gate, ONE: -1.0}, out)
