"""Network -> standard-family ``Transformer``: weights placed by residual direction.

Shape glossary: D d_model, H heads, E d_head, M d_mlp, V input tokens, P positions,
O output columns.

Derivations:

* Attention. Tracr (Haiku) scores are ``(x w_q)(x w_k)^T / sqrt(K)`` with ``K`` Tracr's
  global key size; ours divide by ``sqrt(E)`` with ``E`` our (often smaller) d_head. So
  ``W_Q = w_q * attn_scale * sqrt(E)`` gives identical scores:
  ``(x W_Q)(x W_K)^T / sqrt(E) = (x w_q)(x w_k)^T * attn_scale``. QED. A head narrower
  than ``E`` is zero-padded (zero columns add nothing to a dot product), as are heads
  missing from a layer (zero ``W_V``, ``W_O`` write nothing whatever they attend to).
* MLP. ``W_in`` and ``W_out`` are copied with zero-padded hidden units: a unit with zero
  input weights and bias has ``relu(0) = 0`` and writes nothing.
* Unembedding. ``W_U[:, j]`` is the unit vector of output direction ``j``: the logits are
  the residual's coordinates on the output space (Tracr's ``res_to_out`` projection), in
  output-space order, so argmax index ``j`` decodes to ``output_values[j]``. An identity
  unembedding (the TransformerLens demo's) would be wrong whenever the output directions
  do not sort first in the residual.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from craft.models import Layout, ModelConfig, Transformer
from craft.tracr.model import TracrModel, jsonable
from craft.tracr.network import Network, Packed, Sublayer, pack, prune


def config_for(network: Network, packed: Packed) -> ModelConfig:
    """The smallest standard-family config holding every packed sublayer."""
    attns = [a for a, _ in packed.blocks if a is not None]
    mlps = [m for _, m in packed.blocks if m is not None]
    return ModelConfig(
        family="standard",
        n_layers=len(packed.blocks),
        n_heads=max([len(a.heads) for a in attns], default=1) or 1,
        d_model=len(network.residual),
        d_head=max([h.width for a in attns for h in a.heads], default=1) or 1,
        d_mlp=max([m.hidden for m in mlps], default=0),
        n_vocab=len(network.tokens),
        n_out=len(network.output) if network.categorical else 1,
        n_ctx=network.w_pos.shape[0],
        causal=network.causal,
        positions="learned",
        bias=_has_bias(packed),
    )


def _has_bias(packed: Packed) -> bool:
    """Biases only when some are nonzero: compiled Tracr models have none (smaller file)."""
    subs = [s for blk in packed.blocks for s in blk if s is not None]
    vectors = [s.b_in for s in subs] + [s.b_out for s in subs]
    vectors += [b for s in subs for h in s.heads for b in (h.b_q, h.b_k, h.b_v)]
    return any(v is not None and bool(np.any(v)) for v in vectors)


def _put(param: torch.Tensor | None, value: np.ndarray | None) -> None:
    """Copy ``value`` into the leading corner of ``param`` (the rest stays zero)."""
    if value is None or param is None:
        return
    corner = tuple(slice(0, n) for n in value.shape)
    param.data[corner] = torch.as_tensor(value, dtype=param.dtype)


def _fill_attn(attn: torch.nn.Module, sub: Sublayer, scale: float) -> None:
    for h, head in enumerate(sub.heads):
        _put(attn.W_Q[h], head.w_q * scale)
        _put(attn.W_K[h], head.w_k)
        _put(attn.W_V[h], head.w_v)
        _put(attn.W_O[h], head.w_o)
        if attn.cfg.bias:
            _put(attn.b_Q[h], None if head.b_q is None else head.b_q * scale)
            _put(attn.b_K[h], head.b_k)
            _put(attn.b_V[h], head.b_v)
    _put(getattr(attn, "b_O", None), sub.b_out)


def _fill_mlp(mlp: torch.nn.Module, sub: Sublayer) -> None:
    _put(mlp.W_in, sub.w_in)
    _put(mlp.W_out, sub.w_out)
    _put(getattr(mlp, "b_in", None), sub.b_in)
    _put(getattr(mlp, "b_out", None), sub.b_out)


def to_transformer(network: Network, packed: Packed, meta: dict) -> Transformer:
    """Build the torch model: embeddings, packed blocks and the output-space unembedding."""
    cfg = config_for(network, packed)
    model = Transformer(cfg)
    with torch.no_grad():
        _put(model.embed.W_E, network.w_e)
        _put(model.pos_embed.W_pos, network.w_pos)
        scale = network.attn_scale * math.sqrt(cfg.d_head)
        for block, (attn, mlp) in zip(model.blocks, packed.blocks, strict=True):
            if attn is not None:
                _fill_attn(block.attn, attn, scale)
            if mlp is not None and block.mlp is not None:
                _fill_mlp(block.mlp, mlp)
        index = {d: i for i, d in enumerate(network.residual)}
        for j, d in enumerate(network.output):
            model.unembed.W_U[index[d], j] = 1.0
    model.layout = Layout(network.residual)
    model.meta = meta
    return model.eval()


def finish(
    network: Network, meta: dict, *, remove_noops: bool = True, prune_residual: bool = False
) -> TracrModel:
    """Pack, convert and wrap: the last step shared by the fast and the slow path.

    ``meta`` gets the encodings (so a saved file decodes without Tracr) and a
    ``conversion`` report: the removed no-op sublayers, the zero-filled slots and, with
    ``prune_residual``, the residual directions dropped because nothing reads them.
    """
    dropped: tuple = ()
    if prune_residual:
        network, dropped = prune(network)
    packed = pack(network.sublayers, remove_noops=remove_noops)
    report = {
        "tracr_sublayers": [s.kind for s in network.sublayers],
        "removed_noop_sublayers": list(packed.removed),
        "zero_filled_slots": list(packed.zero_slots),
        "pruned_directions": [str(d) for d in dropped],
    }
    full = {
        "source": "tracr",
        **meta,
        "compiler_bos": network.bos,
        "compiler_pad": network.pad,
        "input_tokens": [jsonable(t) for t in network.tokens],
        "output_encoding": "categorical" if network.categorical else "numerical",
        "output_space": [str(d) for d in network.output],
        "output_values": [jsonable(v) for v in network.output_values],
        "attn_scale": network.attn_scale,
        "conversion": report,
    }
    model = to_transformer(network, packed, full)
    return TracrModel(
        model=model,
        tokens=network.tokens,
        output_values=network.output_values,
        categorical=network.categorical,
        bos=network.bos,
        report=report,
    )
