"""Weight circuits read from a model: pure functions, gauge-invariant comparisons.

Shape glossary: V input vocabulary (with BOS), O output logits, P positions (n_ctx),
D d_model, E d_head, L layers, H heads. Row-vector convention: the residual is ``x [D]``,
a head reads ``x W_Q`` and writes ``z W_O``; logits are ``x W_U``.

* direct path ``W_E W_U`` ``[V, O]``;
* full QK token-token ``E W_Q (E W_K)^T / sqrt(E)`` ``[V, V]`` (standard) and, for the
  tensor family, the bilinear product ``(E W_Q1 W_K1^T E^T) * (E W_Q2 W_K2^T E^T) / E^2``
  (rotary models: at zero offset, where the rotations cancel); the same on positions
  ``W_pos`` (learned positions only) ``[P, P]``;
* full OV ``E W_V W_O W_U`` ``[V, O]`` (token attended to -> logits written);
* copying score ``Re(sum eig) / sum |eig|`` of the square token->token OV;
* composition ``||A B||_F / (||A||_F ||B||_F)`` between a head's ``W_OV`` and a later
  head's ``W_QK`` (Q), ``W_QK^T`` (K) or ``W_OV`` (V); invariant to orthogonal residual
  maps and per-head gauges, not to general invertible ones.

Every circuit is a :class:`~verify.factored.Factored` product, so two models with a
20,000-token vocabulary compare through Gram matrices (see :mod:`verify.factored`).
Circuits are exactly invariant to the residual and per-head gauges of
:mod:`verify.gauge`; :func:`similarity` is also blind to a constant added to all logits.
Attention-based scores live in :mod:`verify.head_scores`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from craft.models.transformer import Transformer
from specs.errors import CraftError
from verify.factored import Centre, Factored, Method, similarity

Kind = Literal["direct", "qk_tokens", "qk_positions", "ov"]


@dataclass(frozen=True, order=True)
class CircuitId:
    """Which circuit: ``kind`` and, for head circuits, ``layer`` and ``head`` (else -1)."""

    kind: Kind
    layer: int = -1
    head: int = -1

    def __str__(self) -> str:
        return self.kind if self.layer < 0 else f"L{self.layer}H{self.head} {self.kind}"


@dataclass(frozen=True)
class Composition:
    """Composition scores of an earlier head into a later one (each in [0, 1]).

    For the tensor family ``q`` and ``k`` are the larger over the two factor pairs
    (q1.k1 and q2.k2), which makes them blind to swapping the pairs.
    """

    q: float
    k: float
    v: float


def _w(model: Transformer, name: str) -> np.ndarray:
    return model.get_parameter(name).detach().cpu().double().numpy()


def _attn(layer: int, name: str) -> str:
    return f"blocks.{layer}.attn.{name}"


def _check_head(model: Transformer, layer: int, head: int) -> None:
    cfg = model.cfg
    if not (0 <= layer < cfg.n_layers and 0 <= head < cfg.n_heads):
        raise CraftError(
            f"no head L{layer}H{head} in a model of {cfg.n_layers} layers x {cfg.n_heads} heads",
            fix="pick a layer and head inside the model",
        )


def qk_pairs(model: Transformer, layer: int, head: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(W_Q, W_K)`` factor pairs ``[D, E]`` of a head: one (standard) or two (tensor)."""
    _check_head(model, layer, head)
    names = [("W_Q", "W_K")] if model.family == "standard" else [("W_Q1", "W_K1"), ("W_Q2", "W_K2")]
    return [(_w(model, _attn(layer, q))[head], _w(model, _attn(layer, k))[head]) for q, k in names]


def qk_scale(model: Transformer) -> float:
    e = model.cfg.d_head
    return 1 / math.sqrt(e) if model.family == "standard" else 1 / e**2


def w_ov(model: Transformer, layer: int, head: int) -> np.ndarray:
    """``W_V W_O`` ``[D, D]``."""
    _check_head(model, layer, head)
    return _w(model, _attn(layer, "W_V"))[head] @ _w(model, _attn(layer, "W_O"))[head]


def w_qk(model: Transformer, layer: int, head: int) -> list[np.ndarray]:
    """``W_Q W_K^T`` ``[D, D]`` per factor pair."""
    return [q @ k.T for q, k in qk_pairs(model, layer, head)]


def direct_path(model: Transformer, tokens: list[int] | None = None) -> Factored:
    """``W_E W_U`` ``[V, O]`` (rows restricted to ``tokens`` when given)."""
    embed, unembed = _w(model, "embed.W_E"), _w(model, "unembed.W_U")
    rows = embed if tokens is None else embed[np.asarray(tokens)]
    # judged against the unembedding rows the embedding writes to: a crafted model's
    # other rows (boosts of 1e63 in tensor induction's float64 models) never meet it
    used = np.abs(embed).sum(0) > 0
    return Factored(rows, unembed, _norms(embed[:, used], unembed[used]))


def _norms(*mats: np.ndarray) -> float:
    """Product of Frobenius norms: the scale a circuit is judged zero against."""
    return float(np.prod([np.linalg.norm(m) for m in mats]))


def _qk_on(model: Transformer, basis: np.ndarray, layer: int, head: int) -> Factored:
    out = None
    for wq, wk in qk_pairs(model, layer, head):
        f = Factored(basis @ wq, (basis @ wk).T, _norms(basis, wq, basis, wk))
        out = f if out is None else out.hadamard(f)
    return out.scale(qk_scale(model))


def qk_tokens(model: Transformer, layer: int, head: int) -> Factored:
    """Full QK on tokens ``[V, V]``: query token (rows) by key token (columns)."""
    return _qk_on(model, _w(model, "embed.W_E"), layer, head)


def qk_positions(model: Transformer, layer: int, head: int) -> Factored:
    """Full QK on learned positions ``[P, P]``: query position by key position."""
    if model.cfg.positions != "learned":
        raise CraftError(
            f"position-position QK needs learned positions, the model has {model.cfg.positions!r}",
            fix="skip qk_positions for rotary or position-free models",
        )
    return _qk_on(model, _w(model, "pos_embed.W_pos"), layer, head)


def ov(model: Transformer, layer: int, head: int, tokens: list[int] | None = None) -> Factored:
    """Full OV ``E W_V W_O W_U`` ``[V, O]``: attended token (rows) -> logits (columns)."""
    _check_head(model, layer, head)
    embed = _w(model, "embed.W_E")
    rows = embed if tokens is None else embed[np.asarray(tokens)]
    w_v, w_o = _w(model, _attn(layer, "W_V"))[head], _w(model, _attn(layer, "W_O"))[head]
    unembed = _w(model, "unembed.W_U")
    return Factored(rows @ w_v, w_o @ unembed, _norms(embed, w_v, w_o, unembed))  # [N, E] [E, O]


def square_tokens(model: Transformer) -> list[int]:
    """Input ids that are also output ids: all, or all but BOS (last) when ``O = V - 1``."""
    cfg = model.cfg
    if cfg.n_out == cfg.n_vocab:
        return list(range(cfg.n_vocab))
    if cfg.n_out == cfg.n_vocab - 1:
        return list(range(cfg.n_out))
    raise CraftError(
        f"input vocabulary {cfg.n_vocab} and output {cfg.n_out} do not pair up",
        fix="copying scores need n_out == n_vocab or n_vocab - 1 (BOS last)",
    )


def copying_score(model: Transformer, layer: int, head: int) -> float:
    """``Re(sum eig) / sum |eig|`` of the square token->token OV; 1 for a pure copier."""
    eig = ov(model, layer, head, square_tokens(model)).eigenvalues()
    total = float(np.abs(eig).sum())
    return float(eig.sum().real) / total if total > 0 else 0.0


def _ratio(a: np.ndarray, b: np.ndarray) -> float:
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.linalg.norm(a @ b)) / denom if denom > 0 else 0.0


def composition(model: Transformer, src: tuple[int, int], dst: tuple[int, int]) -> Composition:
    """Q, K and V composition of head ``src = (layer, head)`` into a later head ``dst``."""
    if src[0] >= dst[0]:
        raise CraftError(
            f"head L{src[0]}H{src[1]} does not come before L{dst[0]}H{dst[1]}",
            fix="compose an earlier layer's head into a later layer's",
        )
    a = w_ov(model, *src)
    qks = w_qk(model, *dst)
    return Composition(
        q=max(_ratio(a, m) for m in qks),
        k=max(_ratio(a, m.T) for m in qks),
        v=_ratio(a, w_ov(model, *dst)),
    )


def centring(model: Transformer, kind: Kind) -> Centre:
    """How to centre a circuit before comparing: logits and softmax scores by rows.

    Logit-space circuits (direct, OV) and softmax QK are blind to a per-row constant;
    the tensor family's pattern is used as is, so its QK is compared uncentred.
    """
    if kind in ("direct", "ov") or model.family == "standard":
        return "rows"
    return "none"


def circuit_ids(model: Transformer) -> list[CircuitId]:
    """Direct path, then per head the token QK, position QK (learned only) and OV."""
    out = [CircuitId("direct")]
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            out.append(CircuitId("qk_tokens", layer, head))
            if model.cfg.positions == "learned":
                out.append(CircuitId("qk_positions", layer, head))
            out.append(CircuitId("ov", layer, head))
    return out


def circuit(model: Transformer, cid: CircuitId) -> Factored:
    """The circuit ``cid`` of ``model``."""
    if cid.kind == "direct":
        return direct_path(model)
    build = {"qk_tokens": qk_tokens, "qk_positions": qk_positions, "ov": ov}[cid.kind]
    return build(model, cid.layer, cid.head)


def all_circuits(model: Transformer) -> dict[CircuitId, Factored]:
    """Every circuit at once (a tensor model at V = 20,000 holds ~80 MB per QK: prefer
    :func:`circuit` one at a time, as :func:`compare_circuits` does)."""
    return {cid: circuit(model, cid) for cid in circuit_ids(model)}


def compare_circuits(
    a: Transformer,
    b: Transformer,
    heads: dict[tuple[int, int], tuple[int, int]] | None = None,
    method: Method = "auto",
) -> dict[CircuitId, float]:
    """Similarity of every circuit of ``a`` with the same circuit of ``b``.

    Args:
        a, b: models of the same family and vocabulary.
        heads: ``{(layer, head) of a: (layer, head) of b}``; default the same index.
        method: passed to :func:`~verify.factored.similarity`.
    """
    if a.family != b.family:
        raise CraftError(f"cannot compare a {a.family} model with a {b.family} one")
    ids_b = set(circuit_ids(b))
    out = {}
    for cid in circuit_ids(a):  # one pair at a time: peak memory is one circuit's factors
        other = cid
        if heads is not None and cid.layer >= 0:
            other = CircuitId(cid.kind, *heads[(cid.layer, cid.head)])
        if other not in ids_b:
            raise CraftError(f"model b has no circuit {other}", fix="compare like with like")
        out[cid] = similarity(circuit(a, cid), circuit(b, other), centring(a, cid.kind), method)
    return out


__all__ = [
    "CircuitId",
    "Composition",
    "Factored",
    "all_circuits",
    "circuit",
    "circuit_ids",
    "compare_circuits",
    "composition",
    "copying_score",
    "direct_path",
    "ov",
    "qk_positions",
    "qk_tokens",
    "similarity",
]
