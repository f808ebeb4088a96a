"""Bracket rules: at a cue, with a bracket open, the closer of the innermost one.

A bracket rule ``(pairs, cue)`` fires at ``t`` when ``x[t]`` is a cue and the bracket
stack of ``x[1..t]`` is non-empty (:mod:`specs.kinds.bracket`: an opener pushes; a closer
pops when it closes the top opener and is otherwise ignored); its next token is the
closer of the top opener. Standard family only, three layers, five components per rule
(``r`` the rule; ``n = max_len``):

1. ``bracket-count`` (layer 0 attention): every score 0, so the head attends uniformly
   over ``s <= t`` (BOS included) and writes ``bcount[r] = h_t / (t+1)``, where ``h_t`` =
   openers minus closers in ``x[1..t]`` (``W_V``: ``+1`` on each opener, ``-1`` on each
   closer).
2. ``bracket-depth`` (layer 0 MLP): ``bh[r] = h_t`` from ``(t+1) bcount``, one pair of
   units per position ``t`` gated by ``pos:t``: ``relu(+-(t+1) bcount + B pos:t - B)``
   with ``B = n + 1 > |h_t|`` (only position ``t``'s pair is on).
3. ``bracket-min`` (layer 1 attention): score ``-beta' bh[r]`` at every key (BOS: 0), so it
   attends to the keys where ``h_s`` is least (ties carry equal values) and writes
   ``bmin[r] = min(0, min_{s <= t} h_s)``. ``d_t = h_t - bmin`` is the depth of a stack
   that ignores a closer on an empty stack (a reflected walk): exactly the spec's depth
   while no closer of the wrong type meets a non-empty stack (the stated condition).
4. ``bracket-code`` (layer 1 MLP): the one-hot depth from ``d = bh - bmin``, with
   snapping steps ``step_k = relu(S (d - k + 1/2) + gate) - relu(S (d - k + 1/2) - 1 +
   gate)`` (``S = 4``): exactly 0 below ``k - 1/2`` and 1 from ``k - 1/4`` on (``d`` is an
   integer up to float error ``< 1/4``), and 0 wherever ``gate = B (sel - 1)`` is off,
   ``sel = [x_t is a cue or an opener]``. There ``bd[r]:k = step_k - step_{k+1} = [d_t =
   k]`` (an opener's depth counts itself) and ``bopen[r] = step_1 = [d_t >= 1]``; at an
   opener one more unit writes its position, ``bkp[r] = t``.
5. ``bracket`` (layer 2 attention): from a cue at ``t`` to the top opener, which is the
   latest opener ``i <= t`` with ``d_i = d_t`` (after it the depth never falls below
   ``d_t``, or it would have been popped; an earlier opener at that depth was popped
   before ``i`` was pushed). OV: ``tok:o -> bclose[r]:closer(o)``, boosted by ``C_r`` in
   the unembedding (as induction's ``copy[r]``). Derivation in :func:`bracket_head`.

The depth limit is ``max_len`` (every context: a depth never exceeds its length); the
float32 limit is :data:`FLOAT32_LIMIT` (:func:`rounding`). The tensor family has no
softmax to average, take a minimum or pick the latest match, and is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from craft.compiler.analysis import Analysis, RuleInfo
from craft.compiler.conditions import Condition
from craft.compiler.kinds.base import Component, Reading, RuleKind, named
from craft.compiler.primitives import HeadCircuit, UnitCircuit, tok
from craft.models.components import ComponentKind, Sublayer
from craft.models.layout import BOS_DIR, ONE, Direction, Layout
from specs.errors import CraftError
from specs.model import Bracket

if TYPE_CHECKING:
    from craft.compiler.constants import Constants

MARGIN_L, MATCH, RECENCY, BOS_SCORE, EMPTY, GATE, MIN_SCORE = (
    "bracket margin L_b",
    "bracket depth match beta",
    "bracket recency gamma",
    "bracket BOS K1",
    "bracket empty K_e",
    "bracket gate K_g",
    "bracket min beta'",
)
SNAP = 4.0  # S: the slope of the snapping steps
FLOAT32_LIMIT = 255
"""The largest ``max_len`` whose bracket model meets its bound in float32: the rounding
loss ``rho = 32 S u (n+1)^2 L_b`` of the lookup margins (:func:`rounding`) stays below
``L_b / 2`` while ``(n + 1)^2 <= 1 / (64 S u) = 2^16`` (``u = 2^-24``)."""


def rounding(max_len: int, dtype: str) -> float:
    """``32 S u (n+1)^2``: the fraction of the lookup margin float rounding may take.

    Every depth code coordinate is a sum of four unit outputs whose pre-activations are at
    most ``S (n + 1)``, so it is off by at most ``8 u S (n + 1)`` (``u`` the unit
    roundoff); a score ``beta sum_k bd:k(t) bd:k(i)`` with ``beta = L_b (n + 1)`` is then off by
    at most ``16 u S (n + 1)^2 L_b``, and a margin (two scores) by twice that.
    """
    u = 2.0**-24 if dtype == "float32" else 2.0**-53
    return 32 * SNAP * u * (max_len + 1) ** 2


def _dirs(rule: str) -> dict[str, Direction]:
    return {
        "count": Direction(f"bcount[{rule}]"),
        "h": Direction(f"bh[{rule}]"),
        "min": Direction(f"bmin[{rule}]"),
        "open": Direction(f"bopen[{rule}]"),
        "kpos": Direction(f"bkp[{rule}]"),
    }


def _bd(rule: str, k: int) -> Direction:
    return Direction(f"bd[{rule}]", k)


def _spec_rule(an: Analysis, name: str) -> Bracket:
    return an.info(name).rule  # the analysis keeps the spec rule (RuleInfo.rule)


def _signs(an: Analysis, rule: Bracket) -> dict[Direction, float]:
    """``+1`` on each opener's ``tok``, ``-1`` on each closer's."""
    out = {}
    for o, c in rule.pairs:
        out[tok(o, an)], out[tok(c, an)] = 1.0, -1.0
    return out


@dataclass(frozen=True)
class _Stage(Component):
    """A component of one bracket rule; it writes the directions it adds (by default)."""

    rule: str
    name: str = ""
    sublayer: Sublayer = "attn"

    def rule_names(self) -> tuple[str, ...]:
        return (self.rule,)

    def writes(self, an: Analysis) -> set[Direction]:
        return set(self.residual(an))


@dataclass(frozen=True)
class BracketCount(_Stage):
    """Uniform head: ``bcount[r] = (openers - closers in x[1..t]) / (t + 1)``."""

    kind: ClassVar[ComponentKind] = ComponentKind.BRACKET_COUNT

    def residual(self, an: Analysis) -> tuple[Direction, ...]:
        return (_dirs(self.rule)["count"],)

    def circuits(self, an: Analysis, k: Constants, tensor: bool) -> HeadCircuit:
        _refuse(self.rule, tensor)
        signs = _signs(an, _spec_rule(an, self.rule))
        return HeadCircuit(self.name, [], [(signs, {_dirs(self.rule)["count"]: 1.0})])


@dataclass(frozen=True)
class BracketDepth(_Stage):
    """MLP: ``bh[r] = (t + 1) bcount[r]``, one pair of units per position (gated by ``pos:t``)."""

    kind: ClassVar[ComponentKind] = ComponentKind.BRACKET_DEPTH
    sublayer: Sublayer = "mlp"

    def reads(self, an: Analysis) -> set[Direction]:
        return {_dirs(self.rule)["count"], Direction("pos", None)}

    def residual(self, an: Analysis) -> tuple[Direction, ...]:
        return (_dirs(self.rule)["h"],)

    def circuits(self, an: Analysis, k: Constants, tensor: bool) -> list[UnitCircuit]:
        """``relu(+-(t+1) bcount + B pos:t - B one)`` writes ``+-bh``: at position ``t``
        the pair sums to ``(t+1) bcount = h_t``; every other pair is off (``B > |h|``)."""
        d = _dirs(self.rule)
        big = an.spec.max_len + 1.0
        units = []
        for t in range(1, an.spec.max_len + 1):
            for sign in (1.0, -1.0):
                inp = {d["count"]: sign * (t + 1), Direction("pos", t): big, ONE: -big}
                units.append(UnitCircuit(f"{self.name}:{t}:{sign:+.0f}", inp, {d["h"]: sign}))
        return units


@dataclass(frozen=True)
class BracketMin(_Stage):
    """Head: ``bmin[r] = min(0, min_{s <= t} h_s)`` (attends to the least ``bh``)."""

    kind: ClassVar[ComponentKind] = ComponentKind.BRACKET_MIN

    def reads(self, an: Analysis) -> set[Direction]:
        return {_dirs(self.rule)["h"]}

    def residual(self, an: Analysis) -> tuple[Direction, ...]:
        return (_dirs(self.rule)["min"],)

    def circuits(self, an: Analysis, k: Constants, tensor: bool) -> HeadCircuit:
        """Score ``-beta' h_s`` (``h_0 = 0`` at BOS), value ``h_s``. Keys above the least
        value trail by ``beta' >= 1``, so with ``beta' = M + ln(2 n^2)`` their total weight
        times their distance ``<= 2n`` is at most ``e^-M``: ``bmin`` is off by less than
        that plus the rounding of ``bh`` (``~ (n+1)^2 u``), far below the steps' 1/4."""
        _refuse(self.rule, tensor)
        d = _dirs(self.rule)
        qk = [({ONE: -k.scores[MIN_SCORE]}, {d["h"]: 1.0})]
        return HeadCircuit(self.name, qk, [({d["h"]: 1.0}, {d["min"]: 1.0})])


@dataclass(frozen=True)
class BracketCode(_Stage):
    """MLP: the one-hot depth ``bd[r]:*`` and ``bopen[r]`` at cues and openers, and the
    position ``bkp[r]`` of each opener."""

    kind: ClassVar[ComponentKind] = ComponentKind.BRACKET_CODE
    sublayer: Sublayer = "mlp"

    def reads(self, an: Analysis) -> set[Direction]:
        d = _dirs(self.rule)
        return {d["h"], d["min"], Direction("tok", None), Direction("pos", None)}

    def writes(self, an: Analysis) -> set[Direction]:
        d = _dirs(self.rule)
        return {d["open"], d["kpos"], Direction(f"bd[{self.rule}]")}

    def residual(self, an: Analysis) -> tuple[Direction, ...]:
        d, n = _dirs(self.rule), an.spec.max_len
        return (d["open"], d["kpos"], *(_bd(self.rule, k) for k in range(1, n + 1)))

    def circuits(self, an: Analysis, k: Constants, tensor: bool) -> list[UnitCircuit]:
        """The steps of :func:`_steps` gated by ``[x_t is a cue or an opener]`` (the two
        sets are disjoint, so the indicator is a sum of ``tok`` coordinates), and
        ``relu(sum_t t pos:t + B' ([x_t is an opener] - 1))`` with ``B' = n + 1``."""
        rule = _spec_rule(an, self.rule)
        openers = {tok(o, an): 1.0 for o, _ in rule.pairs}
        sel = {**{tok(v, an): 1.0 for v in sorted(an.info(self.rule).cue)}, **openers}
        units = _steps(self, an, sel)
        big = an.spec.max_len + 1.0
        where = {Direction("pos", t): float(t) for t in range(1, an.spec.max_len + 1)}
        inp = {**where, **{d: big for d in openers}, ONE: -big}
        return [*units, UnitCircuit(f"{self.name}:kpos", inp, {_dirs(self.rule)["kpos"]: 1.0})]


def _steps(c: BracketCode, an: Analysis, sel: dict) -> list[UnitCircuit]:
    """The snapping steps ``step_k`` (k = 1..n) of ``d = bh - bmin``, gated by ``sel``
    (module docstring, item 4); step ``k`` writes ``+bd:k`` and ``-bd:(k-1)``, so ``bd``
    is the one-hot ``[d = k]``, and step 1 also writes ``bopen``."""
    d, n = _dirs(c.rule), an.spec.max_len
    gate = SNAP * (n + 1) + 2.0  # > every |S (d - k + 1/2)| + 1: an off gate zeroes both
    units = []
    for k in range(1, n + 1):
        out = {_bd(c.rule, k): 1.0}
        out[_bd(c.rule, k - 1) if k > 1 else d["open"]] = -1.0 if k > 1 else 1.0
        for shift in (0.0, -1.0):
            inp = {d["h"]: SNAP, d["min"]: -SNAP, ONE: SNAP * (0.5 - k) + shift - gate}
            inp.update({x: gate for x in sel})
            units.append(UnitCircuit(f"{c.name}:{k}:{shift:+.0f}", inp, out))
            out = {x: -w for x, w in out.items()}
    return units


@dataclass(frozen=True)
class BracketHead(_Stage):
    """Head from a cue to the top opener (the latest opener at the cue's depth)."""

    kind: ClassVar[ComponentKind] = ComponentKind.BRACKET
    gates: tuple[str, ...] = ()

    def reads(self, an: Analysis) -> set[Direction]:
        d = _dirs(self.rule)
        gates = {Direction("fire", g) for g in self.gates}
        return {d["open"], d["kpos"], Direction(f"bd[{self.rule}]"), *gates}

    def writes(self, an: Analysis) -> set[Direction]:
        return {Direction(f"bclose[{self.rule}]", None)}

    def residual(self, an: Analysis) -> tuple[Direction, ...]:
        rule = _spec_rule(an, self.rule)
        vocab = an.spec.vocab.tokens
        return tuple(Direction(f"bclose[{self.rule}]", vocab[c]) for _, c in rule.pairs)

    def circuits(self, an: Analysis, k: Constants, tensor: bool) -> HeadCircuit:
        return bracket_head(self, an, k, tensor)

    def unembed(self, an: Analysis, k: Constants, w_u: np.ndarray, layout: Layout) -> None:
        """``bclose[r]:c`` -> ``C_r`` on c (as induction's ``copy[r]``)."""
        vocab = an.spec.vocab.tokens
        for _, c in _spec_rule(an, self.rule).pairs:
            w_u[layout.index(Direction(f"bclose[{self.rule}]", vocab[c])), c] = k.boost[self.rule]


def bracket_head(c: BracketHead, an: Analysis, k: Constants, tensor: bool) -> HeadCircuit:
    """Attend from a cue at depth ``d_t >= 1`` to its top opener; to BOS otherwise.

    Score at key ``i`` (``[P]`` the indicator): ``beta sum_k bd:k(t) bd:k(i) + gamma
    bkp(i) + S_bos [i = 0]``. ``bd`` is the one-hot depth at cues and openers (0
    elsewhere) and ``bkp(i) = i`` at openers, so an opener scores ``beta [d_i = d_t] +
    gamma i`` from a cue or an opener ``t``, and ``gamma i`` from anywhere else; other
    keys score 0. ``S_bos = K1 - K_e bopen`` off a cue, ``K_e (1 - bopen)`` at a cue
    (``bopen = [d >= 1]`` at cues and openers), plus ``K_g`` per firing gate. With ``L =
    L_b`` and ``N = max_len``: ``gamma = L``, ``beta = K_e = L (N + 1)``, ``K1 = 3 L (N +
    1)``, ``K_g = 2 L (N + 1)``. In every case the intended key leads every other by at
    least ``L``:

    * cue, ``d_t >= 1``, no gate: the top ``i0`` scores ``beta + gamma i0``; an earlier
      opener at the same depth trails by ``gamma (i0 - i) >= L``; an opener at another
      depth scores ``<= gamma N = beta - L``; BOS and other keys 0.
    * cue, ``d_t = 0``: no opener matches (``<= gamma N``); BOS scores ``K_e = gamma N +
      L``.
    * an opener ``t`` (not a cue): openers score ``<= beta + gamma N``; BOS ``K1 - K_e =
      beta + gamma N + L``. Any other non-cue: openers ``<= gamma N``, BOS ``K1``.
    * a gate (a non-deterministic higher rule that can fire here) fires at a cue: BOS
      ``>= K_g = beta + gamma N + L``.

    So the weight off the intended key is at most ``n e^-L``, and ``L_b = (M + ln n + ln
    C_max) / (1 - rho)`` leaves ``e^-M / C_max`` after float rounding takes its share
    ``rho L_b`` of every margin (:func:`rounding`). OV writes a one-hot (norm 1) read with
    ``C_r <= C_max``: each logit is off by at most ``e^-M``, one of the leak terms of
    :func:`~craft.compiler.constants.derive`.
    """
    _refuse(c.rule, tensor)
    rule = _spec_rule(an, c.rule)
    d, n, s = _dirs(c.rule), an.spec.max_len, k.scores
    vocab = an.spec.vocab.tokens
    qk = [({_bd(c.rule, j): s[MATCH]}, {_bd(c.rule, j): 1.0}) for j in range(1, n + 1)]
    qk.append(({ONE: s[RECENCY]}, {d["kpos"]: 1.0}))
    bos = {ONE: s[BOS_SCORE], d["open"]: -s[EMPTY]}
    bos.update({tok(v, an): s[EMPTY] - s[BOS_SCORE] for v in sorted(an.info(c.rule).cue)})
    bos.update({Direction("fire", g): s[GATE] for g in c.gates})
    qk.append((bos, {BOS_DIR: 1.0}))
    ov = [
        ({tok(o, an): 1.0}, {Direction(f"bclose[{c.rule}]", vocab[cl]): 1.0})
        for o, cl in rule.pairs
    ]
    return HeadCircuit(c.name, qk, ov)


def _refuse(rule: str, tensor: bool) -> None:
    if tensor:
        raise CraftError(
            f"the tensor family cannot build bracket rule {rule}: it needs a normalised "
            "average (the depth), a minimum and the latest match, which softmax attention "
            "gives and a polynomial network does not",
            where=f"rule {rule}",
            fix="use --family standard",
        )


def _broken(rule: Bracket, ctx: list[int]) -> list[bool]:
    """Per position of ``ctx``: whether a closer up to there met a non-empty stack whose
    top it does not close."""
    stack: list[int] = []
    out, broken = [], False
    for token in ctx:
        closer = rule.closer_of.get(token)
        if closer is not None:
            stack.append(closer)
        elif token in rule.closers and stack and not broken:
            broken = token != stack.pop()
        out.append(broken)
    return out


class BracketKind(RuleKind):
    name = "bracket"
    rule = Bracket

    def read(self, rule: Bracket) -> Reading:
        """Cue ``cue``, no anchor, no window: it reads the whole prefix."""
        return Reading(rule.cue, None, None, None)

    def max_count(self, r: RuleInfo, max_len: int) -> float:
        return 1.0

    def holds(self, r: RuleInfo, ctx: list[int]) -> bool:
        return bool(r.rule.stack(ctx))

    def rule_components(self, r: RuleInfo, an: Analysis) -> list[Component]:
        gates = tuple(g.name for g in an.gates(r))
        return [
            named(BracketCount(r.name), f"bracket-count:{r.name}"),
            named(BracketDepth(r.name), f"bracket-depth:{r.name}"),
            named(BracketMin(r.name), f"bracket-min:{r.name}"),
            named(BracketCode(r.name), f"bracket-code:{r.name}"),
            named(BracketHead(r.name, gates=gates), f"bracket:{r.name}"),
        ]

    def scores(self, family: str, margin: float, n: int, c_max: float) -> dict[str, float]:
        """``L_b = (M + ln n + ln C_max) / (1 - rho)``; ``gamma = L_b``, ``beta = K_e = L_b
        n``, ``K1 = 3 L_b n``, ``K_g = 2 L_b n`` (here ``n = max_len + 1``), ``beta' = M +
        ln(2 n^2)`` (:func:`bracket_head`, :class:`BracketMin`)."""
        labels = (MARGIN_L, MATCH, RECENCY, BOS_SCORE, EMPTY, GATE, MIN_SCORE)
        if family != "standard":
            return dict.fromkeys(labels, 0.0)
        max_len = n - 1
        dtype = "float32" if max_len <= FLOAT32_LIMIT else "float64"
        big = (margin + math.log(n) + math.log(c_max)) / (1 - rounding(max_len, dtype))
        values = (big, big * n, big, 3 * big * n, big * n, 2 * big * n)
        return dict(zip(labels, (*values, margin + math.log(2 * n * n)), strict=True))

    def float32_limit(self) -> int | None:
        return FLOAT32_LIMIT

    def conditions(self, r: RuleInfo, an: Analysis) -> list[Condition]:
        """Every family: at a cue, no earlier closer met a non-empty stack whose top it
        does not close (``brackets-match``). The spec ignores such a closer; the model's
        count ``h`` takes it as a pop, so its depth is off from there on. Closers on an
        empty stack are handled (the clamped minimum); the spec's own sequences meet the
        condition whenever closers come only from bracket rules (toy_language_brackets).
        Why not more layers: whether a closer pops depends on the top at that time, which
        depends on every earlier closer's decision; re-running the three layers with the
        previous pass's decisions fixes one more wrong-type closer per pass, so no fixed
        depth is exact on every context this way (the bar's random contexts)."""
        if len(r.rule.pairs) == 1:  # a closer either closes the top or meets an empty stack
            return []
        return [Condition("brackets-match", (r.name,), owner=self.name)]

    def describe_condition(self, cond: Condition) -> str:
        return (
            f"{cond.rules[0]}: no closer met an open bracket of another type (the spec "
            "ignores such a closer; the model's depth count does not)"
        )

    def condition_holds(self, cond: Condition, an: Analysis, ctx: list[int]) -> bool:
        r = an.info(cond.rules[0])
        return not ctx or ctx[-1] not in r.cue or not _broken(r.rule, ctx)[-1]

    def condition_mask(self, cond: Condition, an: Analysis, tokens: np.ndarray) -> np.ndarray:
        """One pass per row: false at a cue once a closer has met a non-empty stack of
        another type."""
        r = an.info(cond.rules[0])
        cue = np.isin(tokens, sorted(r.cue))
        broken = np.array([[False, *_broken(r.rule, row[1:].tolist())] for row in tokens])
        return ~(broken & cue)

    def group(self, rule) -> str:
        return "bracket"


BRACKET = BracketKind()
