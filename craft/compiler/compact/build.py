"""Compact heads from constants, the budget check, and the weights.

Every head is built by a constructor of :mod:`craft.compiler.compact.heads` from named
directions, called by its rule kind (:mod:`craft.compiler.kinds`); its numbers come from
the computed separation ``(low, phi, high)`` of the functionals it reads
(:meth:`Codes.separation`) and the softmax margin ``m``.
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
from craft.compiler.compact.codes import Codes, Vec
from craft.compiler.compact.common import Interference
from craft.compiler.compact.shape import Shape
from craft.compiler.constants import MARGIN
from craft.compiler.primitives import HeadCircuit
from craft.models.config import ModelConfig
from craft.models.layout import BOS_DIR, Direction, Layout
from craft.models.transformer import Transformer
from specs.errors import CraftError


def build_heads(an, codes, plan: list[HeadPlan], k: CompactConstants):
    """``(circuits, interference)``: every head, and the worst collision each one reads."""
    built = _build(an, codes, plan, k.softmax_margin, k.boost)
    return [c for c, _ in built], [i for _, i in built if i is not None]


def _build(an, codes, plan, m, boost) -> list[tuple[HeadCircuit, Interference | None]]:
    """Each head by its rule kind (:meth:`~craft.compiler.kinds.base.RuleKind.compact_head`);
    the previous-token head, shared by kinds, here."""
    pf = H.frame(an.spec.max_len)
    return [
        (H.prev_token(codes, pf, m), None)
        if hp.kind == "previous-token"
        else an.info(hp.rules[0]).rule_kind.compact_head(an, codes, pf, hp, m, boost)
        for hp in plan
    ]


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
        rows[Direction("read", name)] = r.rule_kind.compact_read_row(r, an, gap)
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
