"""Stage 4b: plan + circuits -> a model. Writes weights from named directions only.

Head ``h`` of layer ``l`` takes one head dimension per QK term and one per OV term:
``W_Q[h][:, j] = q_j``, ``W_K[h][:, j] = k_j``, ``W_V[h][:, j] = r_j``,
``W_O[h][j, :] = w_j``. The standard family divides scores by ``sqrt(d_head)`` and the
tensor family the pattern by ``d_head^2``, so queries are pre-multiplied to cancel.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from craft.compiler.analysis import log_probs
from craft.compiler.primitives import HeadCircuit, UnitCircuit, Vec, circuits
from craft.models.config import ModelConfig
from craft.models.layout import BOS_DIR, ONE, Direction, Layout
from craft.models.transformer import Transformer

if TYPE_CHECKING:
    from craft.compiler.constants import Constants
    from craft.compiler.plan import Plan


def _put(mat: np.ndarray, layout: Layout, vec: Vec, col: int, scale: float = 1.0) -> None:
    for d, w in vec.items():
        mat[layout.index(d), col] += w * scale


def assemble(p: Plan, k: Constants, family: str) -> tuple[Transformer, list]:
    an, layout = p.analysis, p.layout
    tensor = family == "tensor"
    by_slot = {s: [circuits(c, an, k, family) for c in p.layer(s)] for s in set(p.slots.values())}
    heads = {s: cs for s, cs in by_slot.items() if s % 2 == 0}
    units = {s: [u for cs in c for u in cs] for s, c in by_slot.items() if s % 2 == 1}
    n_heads = max([len(h) for h in heads.values()] + [1])
    d_head = max([max(len(h.qk), len(h.qk2), len(h.ov)) for hs in heads.values() for h in hs] + [1])
    d_mlp = max([len(u) for u in units.values()] + [0])
    cfg = ModelConfig(
        family=family,
        n_layers=p.n_layers,
        n_heads=n_heads,
        d_model=len(layout),
        d_head=d_head,
        d_mlp=d_mlp,
        n_vocab=len(an.spec.vocab) + 1,
        n_out=len(an.spec.vocab),
        n_ctx=an.spec.max_len + 1,
        bias=False,
    )
    model = Transformer(cfg).to(getattr(torch, k.dtype))
    state = {name: t.detach().numpy() for name, t in model.state_dict().items()}  # views
    _embed(state, p, k)
    for slot, hs in heads.items():
        for h, head in enumerate(hs):
            _head(state, f"blocks.{slot // 2}.attn", h, head, layout, d_head, tensor)
    for slot, us in units.items():
        for n, unit in enumerate(us):
            _unit(state, f"blocks.{slot // 2}.mlp", n, unit, layout, tensor)
    model.layout = layout
    return model, [(s, c) for s, cs in sorted(by_slot.items()) for c in cs]


def _embed(state: dict, p: Plan, k: Constants) -> None:
    """Token ``v`` embeds as ``tok:v + one``; BOS as ``bos``; position ``p`` as ``pos:p``.

    Unembedding: ``tok:v`` -> the log-probabilities of v's effective bigram row (the
    direct path ``W_E W_U`` is the bigram table), ``bos`` -> the start distribution;
    the rest by the component that owns the feature
    (:meth:`~craft.compiler.kinds.base.Component.unembed`): ``fire:h`` -> ``C_h`` on h's
    target for deterministic detectors, ``copy[r]:v`` -> ``C_r`` on v, ``read:r`` ->
    ``ln q_r`` for non-deterministic rules.
    """
    an, layout = p.analysis, p.layout
    vocab = an.spec.vocab.tokens
    w_e, w_u = state["embed.W_E"], state["unembed.W_U"]
    for v, name in enumerate(vocab):
        w_e[v, layout.index(Direction("tok", name))] = 1.0
        w_e[v, layout.index(ONE)] = 1.0
        w_u[layout.index(Direction("tok", name))] = log_probs(an.direct[v], k.gap)
    w_e[len(vocab), layout.index(BOS_DIR)] = 1.0
    w_u[layout.index(BOS_DIR)] = log_probs(an.direct[len(vocab)], k.gap)
    if "pos_embed.W_pos" in state:
        for d in layout.named("pos"):
            state["pos_embed.W_pos"][d.value, layout.index(d)] = 1.0
    for c in p.slots:  # each component writes the rows of the features it owns
        c.unembed(an, k, w_u, layout)


def _head(state, prefix, h, c: HeadCircuit, layout, d_head, tensor) -> None:
    names = ("W_Q1", "W_K1") if tensor else ("W_Q", "W_K")
    scale = d_head if tensor else math.sqrt(d_head)
    for j, (q, key) in enumerate(c.qk):
        _put(state[f"{prefix}.{names[0]}"][h], layout, q, j, scale)
        _put(state[f"{prefix}.{names[1]}"][h], layout, key, j)
    for j, (q, key) in enumerate(c.qk2):
        _put(state[f"{prefix}.W_Q2"][h], layout, q, j, scale)
        _put(state[f"{prefix}.W_K2"][h], layout, key, j)
    for j, (r, w) in enumerate(c.ov):
        _put(state[f"{prefix}.W_V"][h], layout, r, j)
        _put(state[f"{prefix}.W_O"][h].T, layout, w, j)


def _unit(state, prefix, n, u: UnitCircuit, layout, tensor) -> None:
    if tensor:
        _put(state[f"{prefix}.W_L"], layout, u.inp, n)
        _put(state[f"{prefix}.W_R"], layout, u.right, n)
        _put(state[f"{prefix}.W_D"].T, layout, u.out, n)
    else:
        _put(state[f"{prefix}.W_in"], layout, u.inp, n)
        _put(state[f"{prefix}.W_out"].T, layout, u.out, n)
