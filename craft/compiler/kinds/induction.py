"""Induction rules: the current token occurred before; copy what followed it first.

One-hot: a head keyed on ``prev:*`` (K-composition with the previous-token head)
writes ``copy[r]:*``, which the unembedding boosts. Compact: the same head on
``(category, index)`` codes; its tensor-family form sums every earlier occurrence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from craft.compiler import analysis
from craft.compiler.analysis import Analysis, RuleInfo, recency
from craft.compiler.compact import heads as H
from craft.compiler.compact.codes import Codes, Separation, _add
from craft.compiler.compact.common import (
    HeadPlan,
    Interference,
    collision,
    interference,
    unsupported,
)
from craft.compiler.conditions import Condition, counts
from craft.compiler.kinds.base import Band, Component, Reading, RuleKind, named
from craft.compiler.kinds.shared import gates_need_products, ungated
from craft.compiler.primitives import HeadCircuit, ind, tok
from craft.models.components import ComponentKind, Sublayer
from craft.models.layout import BOS_DIR, ONE, Direction, Layout
from specs.model import Induction

if TYPE_CHECKING:
    from craft.compiler.constants import Constants

STEP, BOS, MATCH, GATE = (
    "induction step D",
    "induction BOS B0",
    "induction match C_m",
    "induction gate K",
)


@dataclass(frozen=True)
class InductionHead(Component):
    """Head attending from ``x[t]`` to the position after its earliest earlier occurrence."""

    kind: ClassVar[ComponentKind] = ComponentKind.INDUCTION
    band: ClassVar[Band] = Band.OUTPUT

    rule: str
    gates: tuple[str, ...]
    gate_factor: tuple[tuple[Direction, float], ...] = ()  # tensor, exact: [no gate fires]
    name: str = ""
    sublayer: Sublayer = "attn"

    def rule_names(self) -> tuple[str, ...]:
        return (self.rule,)

    def reads(self, an: Analysis) -> set[Direction]:
        fires = {Direction("fire", n) for n in self.gates}
        return {Direction("prev", None)} | fires | {d for d, _ in self.gate_factor if d != ONE}

    def writes(self, an: Analysis) -> set[Direction]:
        return {Direction(f"copy[{self.rule}]", None)}

    def residual(self, an: Analysis) -> tuple[Direction, ...]:
        return tuple(Direction(f"copy[{self.rule}]", t) for t in an.spec.vocab.tokens)

    def circuits(self, an: Analysis, k: Constants, tensor: bool) -> HeadCircuit:
        return induction(self, an, k, tensor)

    def unembed(self, an: Analysis, k: Constants, w_u: np.ndarray, layout: Layout) -> None:
        """``copy[r]:v`` -> ``C_r`` on v."""
        for v, name in enumerate(an.spec.vocab.tokens):
            w_u[layout.index(Direction(f"copy[{self.rule}]", name)), v] = k.boost[self.rule]


def induction(c: InductionHead, an: Analysis, k: Constants, tensor: bool) -> HeadCircuit:
    """Copy the token after the earliest earlier occurrence of ``x[t]`` (K-composition).

    Keys are ``prev:*`` (written by the previous-token head), so position ``s'`` matches
    when ``x[s'-1] = x[t]`` and its value ``tok:x[s']`` is the follower.
    Standard: score ``C_m [match] - D s'`` plus ``B0 + K sum_g fire:g`` on BOS, with
    ``D = B0 = M + ln n``, ``C_m = D max_len + 2 B0``, ``K = C_m + B0 + M``: the earliest
    match beats BOS by ``>= B0`` and every later match by ``>= D``; without a match BOS
    beats everything by ``>= B0``; when a gate (a non-deterministic higher rule that can
    fire here) fires, BOS beats every match by ``>= M``. Tensor: factor 1 the match
    ``[x_t = prev_s]``, factor 2 ``(1 - sum_g fire:g) w(s)`` (the gate, or with exact
    gates the product tree's ``[no gate fires]``,
    :func:`~craft.compiler.kinds.shared.ungated`, times the recency
    weight ``w(s) = 3**(max_len - s)``, :func:`~craft.compiler.analysis.recency`) at every
    non-BOS key. A polynomial cannot select the earliest match, but it can outweigh the
    rest: the copy coordinate of token ``v`` is ``c_v = sum w(s)`` over the matching keys
    ``s`` that hold ``v``; the earliest match ``e`` gives its follower at least ``w(e)``,
    and all later matches together at most ``w(e) / 2`` (a geometric series of ratio
    1/3), so ``c_{x[e]} - c_u >= w(e) / 2 >= 1/2`` for every other token ``u``.
    OV: ``tok:v -> copy[r]:v``; the unembedding boosts the copied token by ``C_r``, which
    :func:`~craft.compiler.constants.derive` sets to twice the range it must beat.
    """
    r = an.info(c.rule)
    vocab = an.spec.vocab.tokens
    w = 1.0 if tensor else k.scores[MATCH]
    match = [({tok(v, an): w}, {Direction("prev", vocab[v]): 1.0}) for v in sorted(r.cue)]
    ov = [
        ({tok(v, an): 1.0}, {Direction(f"copy[{r.name}]", vocab[v]): 1.0})
        for v in range(len(vocab))
    ]
    gate = [Direction("fire", g) for g in c.gates]
    keys = [Direction("pos", s) for s in range(1, an.spec.max_len + 1)]
    if tensor:
        weights = {d: recency(d.value, an.spec.max_len) for d in keys}
        off = dict(c.gate_factor) or {ONE: 1.0, **ind(gate, -1.0)}
        return HeadCircuit(c.name, match, ov, [(off, weights)])
    step = ({ONE: -k.scores[STEP]}, {d: float(d.value) for d in keys})
    bos = ({ONE: k.scores[BOS], **ind(gate, k.scores[GATE])}, {BOS_DIR: 1.0})
    return HeadCircuit(c.name, match + [step, bos], ov)


# -- compact ---------------------------------------------------------------------------
def induction_gate_ok(an: Analysis, r: RuleInfo, g: RuleInfo) -> None:
    """A gate must be readable at the induction query: a non-deterministic trigram whose cue
    contains r's cue and whose anchor is a union of whole categories (exact prev code)."""
    vocab = an.spec.vocab
    whole = all(vocab.resolve(vocab.category_of(vocab.tokens[v])) <= g.anchor for v in g.anchor)
    if g.kind != "trigram" or not r.cue <= g.cue or not whole:
        raise unsupported(f"induction {r.name} gated by {g.name}")


def compact_induction(an, codes, pf, hp, m, boost) -> tuple[HeadCircuit, Interference | None]:
    """The compact induction head (:func:`craft.compiler.compact.heads.induction`) with its
    constants from the computed worst collision of the match."""
    r = an.info(hp.rules[0])
    cue = sorted(r.cue)
    cats = {
        codes.cat_of[v]: codes.cls_set(u for u in cue if codes.cat_of[u] == codes.cat_of[v])
        for v in cue
    }
    idx = {codes.idx_of[v]: {Direction("idx", codes.idx_of[v]): 1.0} for v in sorted(cue)}
    probe = H.induction(hp.name, codes, cats, idx, {}, pf, 1.0, 0.0, 0.0, 0.0, [])  # C_m = 1
    match = _bilinear(codes, probe.qk[: len(cats) + len(idx)], codes.tok, codes.prev)
    own = np.diag(match)[cue]
    off = match.copy()
    off[cue, cue] = -np.inf
    low, phi, high = float(own.min()), float(own.max()), float(off.max())
    q_at, k_at = np.unravel_index(int(np.argmax(off)), off.shape)
    sep = Separation(low, phi, high, cue[int(own.argmin())], int(k_at))
    if low <= high:
        raise collision(hp.name, "a repeated token from a different one")
    d = m
    c_m = (d * an.spec.max_len + 2 * m) / (low - high)
    b0 = c_m * high + m
    gate = _add(*(codes.prev_set(g.anchor) for g in an.gates(r)))
    ov = H.copied_token_ov(codes, boost[r.name])
    k = c_m * phi - b0 + m
    circuit = H.induction(hp.name, codes, cats, idx, gate, pf, c_m, d, b0, k, ov)
    what = f"after {an.spec.vocab.tokens[int(q_at)]}, previous token"
    return circuit, interference(an, hp, what, sep)


def _bilinear(codes: Codes, terms, q_code, k_code) -> np.ndarray:
    """``[V, V]``: the score the terms give (query token, key token) through two codes."""
    qm, km = codes.matrix(q_code), codes.matrix(k_code)
    q = np.stack([qm @ codes.vector(a) for a, _ in terms], 1)
    k = np.stack([km @ codes.vector(b) for _, b in terms], 1)
    return q @ k.T


def tensor_induction(an: Analysis, codes: Codes, hp: HeadPlan, boost: float) -> HeadCircuit:
    """``pattern[t, s] = [x_t in cue][cat x_t = prevcat_s] * [idx x_t = previdx_s]``.

    The product is 1 exactly when ``x[s-1] = x_t`` (a cue token) and 0 otherwise, so the
    head sums the follower of *every* earlier occurrence: exact where they agree (the
    ``followers-agree`` condition), each copy ``boost * out(follower)``.
    """
    r = an.info(hp.rules[0])
    cats = sorted({codes.cat_of[v] for v in r.cue})
    f1 = [
        (codes.cls_set(v for v in r.cue if codes.cat_of[v] == k), {Direction("prevcat", k): 1.0})
        for k in cats
    ]
    n_idx = len(codes.layout.named("idx"))
    f2 = [({Direction("idx", i): 1.0}, {Direction("previdx", i): 1.0}) for i in range(n_idx)]
    ov = [
        (
            {codes.cls(c): 1.0 for c, m in enumerate(codes.classes) if codes.cat_of[m[0]] == k},
            {Direction("outcat", k): boost},
        )
        for k in codes.out_cats
    ]
    ov += [({Direction("idx", i): 1.0}, {Direction("outidx", i): boost}) for i in range(n_idx)]
    return HeadCircuit(hp.name, f1, ov, f2)


class InductionKind(RuleKind):
    name = "induction"
    rule = Induction
    needs_prev = True
    copies = True
    exponential = True
    tensor_compact = True

    def read(self, rule: Induction) -> Reading:
        return Reading(rule.on, None, None, None)

    def max_count(self, r: RuleInfo, max_len: int) -> float:
        """Its copy coordinate, the sum of the recency weights of every match, is at most
        ``sum_s RATIO**(max_len - s) = (RATIO**max_len - 1) / (RATIO - 1)``
        (:func:`~craft.compiler.analysis.recency`)."""
        ratio = analysis.RATIO  # read at call time: tests vary it
        return (ratio**max_len - 1) / (ratio - 1)

    def holds(self, r: RuleInfo, ctx: list[int]) -> bool:
        return ctx[-1] in ctx[:-1]

    def implies(self, a: RuleInfo, b: RuleInfo, on: frozenset[int]) -> bool:
        return b.rule_kind is self and (a.cue & on) <= b.cue

    def rule_components(self, r: RuleInfo, an: Analysis) -> list[Component]:
        """Its head; in the tensor family's exact mode, first the product tree of ``[no
        gate fires]`` when ``1 - sum_g fire:g`` is not that already."""
        gates = an.gates(r)
        names = tuple(g.name for g in gates)
        if not gates_need_products(an, gates):
            return [named(InductionHead(r.name, names), f"induction:{r.name}")]
        comps, off = ungated(an, f"ungated:{r.name}", r.name, [], gates)
        head = InductionHead(r.name, names, tuple(off.items()))
        return [*comps, named(head, f"induction:{r.name}")]

    def weights(self, family: str, margin: float, n: int, max_len: int) -> dict[str, float]:
        """``D = B0 = M + ln n``, ``C_m = D max_len + 2 B0``, ``K = C_m + B0 + M``
        (:func:`induction`; the tensor family has no softmax: all 0)."""
        standard = family == "standard"
        d = margin + math.log(n) if standard else 0.0
        c_m = d * max_len + 2 * d
        k = c_m + d + margin if standard else 0.0
        return {STEP: d, BOS: d, MATCH: c_m if standard else 0.0, GATE: k}

    def tensor_boost(self, rng: float, extra: float, gap: float) -> tuple[float, float]:
        """Twice ``R + G``: the copied token's coordinate leads every other by only half
        the earliest recency weight, at least 1/2."""
        return 2 * (rng + gap), 0.0

    def tensor_conditions(self, r: RuleInfo, an: Analysis, earliest: bool) -> list[Condition]:
        """``followers-agree`` unless the model weighs the earliest occurrence above the
        rest; its gates must not fire together and must each see one anchor."""
        gates = an.gates(r)
        out = [] if earliest else [Condition("followers-agree", (r.name,))]
        if an.exact_tensor:  # gates through a product tree (rule_components)
            return out
        for a, b in combinations(gates, 2):
            if an.can_cofire(a, b):
                out.append(Condition("not-together", (a.name, b.name)))
        return out + [Condition("single-anchor", (g.name,)) for g in gates if counts(an, g)]

    def prev_sets(self, r: RuleInfo) -> list[frozenset[int]]:
        return [frozenset({v}) for v in sorted(r.cue)]

    def compact_heads(self, rules: list[RuleInfo], an: Analysis) -> list[HeadPlan]:
        out = []
        for r in rules:
            for g in an.gates(r):
                induction_gate_ok(an, r, g)
            out.append(HeadPlan(f"induction:{r.name}", "induction", 1, (r.name,)))
        return out

    def compact_head(self, an, codes, pf, hp, m, boost):
        return compact_induction(an, codes, pf, hp, m, boost)

    def tensor_head(self, an: Analysis, codes: Codes, hp: HeadPlan, boost) -> HeadCircuit:
        return tensor_induction(an, codes, hp, boost[hp.rules[0]])


INDUCTION = InductionKind()
