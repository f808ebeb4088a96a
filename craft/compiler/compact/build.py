"""Compact heads from constants, the budget check, and the weights.

Every head is built by a constructor of :mod:`craft.compiler.compact.heads` from named
directions; its numbers come from the computed separation ``(low, phi, high)`` of the
functionals it reads (:meth:`Codes.separation`) and the softmax margin ``m``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from craft.compiler.analysis import Analysis, log_probs
from craft.compiler.assemble import _head
from craft.compiler.compact import heads as H
from craft.compiler.compact import tensor as T
from craft.compiler.compact.budget import FP32_ULP, CompactConstants, HeadPlan, boosts, floor_range
from craft.compiler.compact.codes import Codes, Separation, Vec, _add, scale
from craft.compiler.compact.shape import Shape
from craft.compiler.constants import MARGIN
from craft.compiler.primitives import HeadCircuit
from craft.models.config import ModelConfig
from craft.models.layout import BOS_DIR, Direction, Layout
from craft.models.transformer import Transformer
from specs.errors import CraftError


def _collision(name: str, what: str) -> CraftError:
    return CraftError(
        f"head {name}: the compact code cannot separate {what}",
        where="--shape",
        fix="compile without --shape (one-hot codes separate every token)",
    )


@dataclass(frozen=True)
class Interference:
    """The worst collision a head's reads meet: the member token that reads lowest and the
    non-member that reads highest; the head's score scale is divided by ``low - high``."""

    head: str
    rules: tuple[str, ...]
    reads: str
    member: str
    other: str
    low: float
    high: float

    def describe(self) -> str:
        return (
            f"{self.head}: {self.reads} {self.member} reads {self.low:g}, "
            f"{self.other} reads {self.high:g} (margin x {1 / (self.low - self.high):g})"
        )

    def to_json(self) -> dict:
        return {**self.__dict__, "rules": list(self.rules)}


def _interference(an, hp: HeadPlan, reads: str, sep: Separation) -> Interference:
    toks = an.spec.vocab.tokens
    name = lambda v: toks[v] if v >= 0 else "-"  # noqa: E731
    return Interference(
        hp.name, hp.rules, reads, name(sep.member), name(sep.other), sep.low, sep.high
    )


def _prev(an, codes, pf, hp, m, boost):
    return H.prev_token(codes, pf, m), None


def _write(codes: Codes, r, boost) -> Vec:
    if r.deterministic:
        return scale(codes.out(r.target), boost[r.name])
    return {Direction("read", r.name): 1.0}


def _anchor_map(name, codes: Codes, rules, boost) -> list[tuple[Vec, Vec]]:
    """OV exact on every anchor: least squares from the anchors' token codes to writes."""
    anchors = sorted({v for r in rules for v in r.anchor})
    owner = {v: r for r in rules for v in r.anchor}
    x = codes.matrix(codes.tok)[anchors]
    y = np.stack([codes.vector(_write(codes, owner[v], boost)) for v in anchors])
    w = np.linalg.lstsq(x, y, rcond=None)[0]
    if np.abs(x @ w - y).max() > 1e-6 * max(1.0, np.abs(y).max()):
        raise _collision(name, "its anchors (two anchors of different rules share a code)")
    dims = codes.layout.directions
    return [
        ({dims[j]: 1.0}, {dims[i]: float(w[j, i]) for i in np.flatnonzero(w[j])})
        for j in np.flatnonzero(np.abs(w).sum(1) > 1e-12)
    ]


def _detector(an, codes, pf, hp, m, boost) -> tuple[HeadCircuit, Interference | None]:
    rules = [an.info(n) for n in hp.rules]
    lo, hi = rules[0].window
    width, top = hi - lo + 1, ((hi - lo) / 2) ** 2
    sep = Separation.worst(
        [codes.separation(codes.tok_set(r.anchor), r.anchor, codes.tok) for r in rules]
    )
    low, phi, high = sep.low, sep.phi, sep.high
    if low <= high:
        raise _collision(hp.name, "an anchor from a token that is not one")
    rho = (phi - low) / (low - high)
    if width <= rho * top:
        raise _collision(hp.name, "anchors inside the window from anchors outside it")
    a = 2 * m * (1 + rho) / (width - rho * top)
    c = (a * top + 2 * m) / (low - high)
    det = [H.DetectorRule(codes.cls_set(r.cue), codes.tok_set(r.anchor), {}) for r in rules]
    value = _anchor_map(hp.name, codes, rules, boost)
    circuit = H.detector(hp.name, codes, pf, (lo, hi), det, a, c, c * low - m, value)
    return circuit, _interference(an, hp, "anchor", sep)


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
        raise _collision(hp.name, "a trigram's first token from another token")
    a = 2 * m / (low - high)
    out = []
    for r in rules:
        for c in sorted({codes.class_of[v] for v in r.cue}):
            out.append(({codes.cls(c): 1.0}, _write(codes, r, boost)))
    circuit = H.trigram_head(
        hp.name, codes, pf, pairs, out, a, a * low - m, a * (phi - low) + 2 * m
    )
    return circuit, _interference(an, hp, "previous token", sep)


def _readout(an, codes, pf, hp, m, boost) -> tuple[HeadCircuit, Interference | None]:
    r = an.info(hp.rules[0])
    sep = codes.separation(codes.prev_set(r.anchor), r.anchor, codes.prev)
    low, phi, high = sep.low, sep.phi, sep.high
    if low <= high:
        raise _collision(hp.name, f"the first token of {r.name} from another token")
    a = 2 * m / (low - high)
    if a * (1 + low - phi) < 2 * m:
        raise _collision(hp.name, f"the first token of {r.name} alone from the whole pair")
    out = [
        ({codes.cls(c): 1.0}, {codes.cls(c): -1.0})
        for c in sorted({codes.class_of[v] for v in r.cue})
    ]
    out.append((codes.one(), {Direction("read", r.name): 1.0}))
    cue, anchor = codes.cls_set(r.cue), codes.prev_set(r.anchor)
    circuit = H.readout_head(hp.name, codes, pf, cue, anchor, out, a, a * (1 + low) - m, m)
    return circuit, _interference(an, hp, "previous token", sep)


def _induction(an, codes, pf, hp, m, boost) -> tuple[HeadCircuit, Interference | None]:
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
        raise _collision(hp.name, "a repeated token from a different one")
    d = m
    c_m = (d * an.spec.max_len + 2 * m) / (low - high)
    b0 = c_m * high + m
    gate = _add(*(codes.prev_set(g.anchor) for g in an.gates(r)))
    b = boost[r.name]
    ov = [
        (
            {codes.cls(c): 1.0 for c, mm in enumerate(codes.classes) if codes.cat_of[mm[0]] == k},
            {Direction("outcat", k): b},
        )
        for k in codes.out_cats
    ]
    ov += [({dd: 1.0}, {Direction("outidx", dd.value): b}) for dd in codes.layout.named("idx")]
    k = c_m * phi - b0 + m
    circuit = H.induction(hp.name, codes, cats, idx, gate, pf, c_m, d, b0, k, ov)
    what = f"after {an.spec.vocab.tokens[int(q_at)]}, previous token"
    return circuit, _interference(an, hp, what, sep)


def _bilinear(codes: Codes, terms, q_code, k_code) -> np.ndarray:
    """``[V, V]``: the score the terms give (query token, key token) through two codes."""
    qm, km = codes.matrix(q_code), codes.matrix(k_code)
    q = np.stack([qm @ codes.vector(a) for a, _ in terms], 1)
    k = np.stack([km @ codes.vector(b) for _, b in terms], 1)
    return q @ k.T


BUILDERS = {
    "previous-token": _prev,
    "skip-detector": _detector,
    "trigram-head": _trigram,
    "readout-head": _readout,
    "induction": _induction,
}


def build_heads(an, codes, plan: list[HeadPlan], k: CompactConstants):
    """``(circuits, interference)``: every head, and the worst collision each one reads."""
    built = _build(an, codes, plan, k.softmax_margin, k.boost)
    return [c for c, _ in built], [i for _, i in built if i is not None]


def _build(an, codes, plan, m, boost) -> list[tuple[HeadCircuit, Interference | None]]:
    pf = H.frame(an.spec.max_len)
    return [BUILDERS[hp.kind](an, codes, pf, hp, m, boost) for hp in plan]


_BOUND = {"u": 0.5, "u2": 0.25}


def _mag(vec: Vec) -> float:
    """Largest |vec . x| over residuals x the model makes (one class, one idx, ... at a time)."""
    groups: dict[str, float] = {}
    for d, w in vec.items():
        bound = _BOUND.get(d.value, 1.0) if d.name == "pos" else 1.0
        key = d.name if d.name in ("cls", "idx", "prevcat", "previdx") else str(d)
        groups[key] = max(groups.get(key, 0.0), abs(w) * bound)
    return sum(groups.values())


def score_scale(an: Analysis, codes: Codes, plan, m: float) -> tuple[float, float]:
    """(largest score magnitude, its float32 rounding bound) of the heads built with ``m``.

    A score is ``sum_j q_j k_j`` with ``q_j = x . W_Q[:, j]``; a residual holds at most
    ``g`` nonzero coordinates (one per named group, two for positions), so by the usual
    floating-point sum bound the score's error is at most ``(J + 2g + 4) 2^-24 sum_j
    |q_j| |k_j|`` (``J`` the head's QK terms), with ``|q_j|, |k_j|`` bounded by
    :func:`_mag`.
    """
    gap = MARGIN + math.log(len(an.spec.vocab))
    circuits = _build(an, codes, plan, m, boosts(an, gap, floor_range(an, gap)))
    groups = len(codes.layout.describe()) + 1
    sums = [sum(_mag(q) * _mag(k) for q, k in c.qk) for c, _ in circuits]
    errs = [
        FP32_ULP * (len(c.qk) + 2 * groups + 4) * s
        for (c, _), s in zip(circuits, sums, strict=True)
    ]
    return max(sums, default=0.0), max(errs, default=0.0)


@dataclass(frozen=True)
class Need:
    """What the construction needs: layers, heads per layer (by name), width, head width."""

    per_layer: tuple[tuple[str, ...], ...]
    d_model: int
    d_head: int
    detail: str

    def smallest(self) -> Shape:
        h = max([len(x) for x in self.per_layer] + [1])
        d = max(self.d_model, h * self.d_head)
        return Shape(len(self.per_layer), h, d, self.d_head)

    def check(self, shape: Shape) -> None:
        wrong = []
        if shape.n_layers < len(self.per_layer):
            wrong.append(f"it needs {len(self.per_layer)} layers")
        for layer, names in enumerate(self.per_layer):
            if len(names) > shape.n_heads:
                wrong.append(f"layer {layer} needs {len(names)} heads ({', '.join(names)})")
        if shape.d_model < self.d_model:
            wrong.append(f"the residual needs {self.d_model} dimensions ({self.detail})")
        if shape.d_head < self.d_head:
            wrong.append(f"a head needs {self.d_head} dimensions (d_head {shape.d_head})")
        if wrong:
            s = self.smallest()
            fix = f"--shape {s.n_layers}x{s.n_heads}x{s.d_model}"
            if s.d_head != s.d_model // s.n_heads:
                fix += f" --d-head {s.d_head}"
            raise CraftError(
                f"does not fit {shape.n_layers}x{shape.n_heads}x{shape.d_model}: "
                + "; ".join(wrong),
                where="--shape",
                fix=fix,
            )


def needed(plan: list[HeadPlan], circuits: list[HeadCircuit], codes: Codes) -> Need:
    layers = max([hp.layer for hp in plan], default=-1) + 1
    per = tuple(tuple(hp.name for hp in plan if hp.layer == la) for la in range(layers))
    d_head = max([max(len(c.qk), len(c.ov)) for c in circuits] + [1])
    detail = ", ".join(f"{n} {s}" for n, s in codes.layout.describe())
    return Need(per, len(codes.layout), d_head, detail)


def unembedding(an: Analysis, codes: Codes, gap: float) -> dict[Direction, np.ndarray]:
    """``W_U`` rows by direction: class rows, start, output code, read rows."""
    vocab = an.spec.vocab
    rows = {codes.cls(c): log_probs(an.direct[m[0]], gap) for c, m in enumerate(codes.classes)}
    rows[BOS_DIR] = log_probs(an.direct[len(vocab)], gap)
    for k in codes.out_cats:
        rows[Direction("outcat", k)] = np.isin(np.arange(len(vocab)), list(vocab.resolve(k))) * 1.0
    for d in codes.layout.named("outidx"):
        rows[d] = (np.array(codes.idx_of) == d.value) * 1.0
    for name in codes.reads:
        r = an.info(name)
        row = log_probs(r.next, gap)
        if r.kind == "skip_bigram":  # the detector cannot cancel the direct row: fold it in
            row = row - log_probs(an.direct[min(r.cue)], gap)
        rows[Direction("read", name)] = row
    return rows


def _position(max_len: int, p: int, layout: Layout) -> Vec:
    """Position ``p``'s code: ``(1, u, u^2)`` from position 1 (BOS has none) or residues."""
    if Direction("pos", "u") in layout:
        u = H.frame(max_len).u(p)
        return (
            {Direction("pos", 1): 1.0, Direction("pos", "u"): u, Direction("pos", "u2"): u * u}
            if p
            else {}
        )
    if Direction("posa", 0) in layout:
        return T.position(max_len, p)
    return {}


def write_model(
    an, codes: Codes, plan, circuits, k: CompactConstants, shape: Shape, family: str = "standard"
):
    """The model: token codes, position codes (``pos:u, pos:u2`` or residues), unembedding
    rows, and every head's terms (standard: scores; tensor: the two factors)."""
    vocab = an.spec.vocab
    cfg = ModelConfig(
        family,
        shape.n_layers,
        shape.n_heads,
        shape.d_model,
        shape.d_head,
        0,
        len(vocab) + 1,
        len(vocab),
        an.spec.max_len + 1,
        bias=False,
    )
    spare = tuple(Direction("spare", i) for i in range(shape.d_model - len(codes.layout)))
    layout = Layout(codes.layout.directions + spare)
    model = Transformer(cfg)
    state = {name: t.detach().numpy() for name, t in model.state_dict().items()}
    for v in range(len(vocab) + 1):
        for d, w in codes.tok(v).items():
            state["embed.W_E"][v, layout.index(d)] = w
    for p in range(an.spec.max_len + 1):
        for d, w in _position(an.spec.max_len, p, layout).items():
            state["pos_embed.W_pos"][p, layout.index(d)] = w
    for d, row in unembedding(an, codes, k.gap).items():
        state["unembed.W_U"][layout.index(d)] = row
    slot = {}
    for hp, circ in zip(plan, circuits, strict=True):
        h = slot.setdefault(hp.layer, 0)
        slot[hp.layer] += 1
        _head(state, f"blocks.{hp.layer}.attn", h, circ, layout, shape.d_head, family == "tensor")
    model.layout = layout
    return model
