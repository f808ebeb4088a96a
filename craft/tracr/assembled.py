"""The slow path: an assembled Tracr (Haiku) model -> Network.

For users who already hold an ``AssembledTransformerModel`` (from
``compile_rasp_to_model``). The weights are read from its Haiku params; the residual,
token, index and output spaces are read as Tracr's own typed ``BasisDirection``s by
running ``get_compiled_model`` with ``assemble._make_embedding_modules`` observed, so
nothing is parsed out of the label strings and the output space is found exactly,
whatever its values and wherever it sorts.

Shape glossary: D d_model, H heads, K Tracr's key size, M MLP width.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from craft.tracr._deps import tracr_version
from craft.tracr.convert import finish
from craft.tracr.model import TracrModel, direction
from craft.tracr.network import Head, Network, Sublayer
from specs.errors import CraftError


class _Captured(Exception):
    """Raised to stop ``get_compiled_model`` once the spaces are captured."""


@contextlib.contextmanager
def _observe_embedding_spaces(assemble: Any, seen: dict) -> Iterator[None]:
    original = assemble._make_embedding_modules

    def observe(residual_space, tokens_space, indices_space, output_space):
        seen.update(
            residual=residual_space,
            tokens=tokens_space,
            indices=indices_space,
            output=output_space,
        )
        raise _Captured

    assemble._make_embedding_modules = observe
    try:
        yield
    finally:
        assemble._make_embedding_modules = original


def spaces_of(assembled: Any) -> dict:
    """``{"residual", "tokens", "indices", "output"}``: the model's typed vector spaces."""
    import haiku as hk
    from tracr.compiler import assemble

    seen: dict = {}
    with _observe_embedding_spaces(assemble, seen), contextlib.suppress(_Captured):
        hk.transform(assembled.get_compiled_model).init(None)
    if not seen:
        raise CraftError(
            "could not read the residual spaces of this assembled model",
            fix="compile it with tracr.compiler.compiling.compile_rasp_to_model",
        )
    return seen


def _np(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _attn(params: dict, name: str, n_heads: int, key_size: int) -> Sublayer:
    def per_head(key: str) -> tuple[np.ndarray, np.ndarray]:
        w, b = _np(params[f"{name}/{key}"]["w"]), _np(params[f"{name}/{key}"]["b"])
        return w.reshape(w.shape[0], n_heads, key_size).transpose(1, 0, 2), b.reshape(
            n_heads, key_size
        )

    (wq, bq), (wk, bk), (wv, bv) = per_head("query"), per_head("key"), per_head("value")
    wo = _np(params[f"{name}/linear"]["w"]).reshape(n_heads, key_size, -1)
    heads = tuple(
        Head(w_q=wq[h], w_k=wk[h], w_v=wv[h], w_o=wo[h], b_q=bq[h], b_k=bk[h], b_v=bv[h])
        for h in range(n_heads)
    )
    return Sublayer(kind="attn", heads=heads, b_out=_np(params[f"{name}/linear"]["b"]))


def _mlp(params: dict, name: str) -> Sublayer:
    l1, l2 = params[f"{name}/linear_1"], params[f"{name}/linear_2"]
    return Sublayer(
        kind="mlp", w_in=_np(l1["w"]), b_in=_np(l1["b"]), w_out=_np(l2["w"]), b_out=_np(l2["b"])
    )


def network_from_assembled(assembled: Any) -> Network:
    """Read an ``AssembledTransformerModel`` into a :class:`Network`."""
    if not hasattr(assembled, "params") or not hasattr(assembled, "get_compiled_model"):
        raise CraftError(
            f"expected a Tracr AssembledTransformerModel, got {type(assembled).__name__}",
            fix="pass the result of compile_rasp_to_model, or use craft.tracr.from_rasp",
        )
    cfg, params = assembled.model_config, assembled.params
    if cfg.layer_norm:
        raise CraftError("this Tracr model uses LayerNorm", fix="compile with layer_norm=False")
    spaces = spaces_of(assembled)
    enc_in, enc_out = assembled.input_encoder, assembled.output_encoder
    if enc_in is None or enc_in.bos_token is None:
        raise CraftError("the assembled model has no BOS input encoder", fix="compile with a BOS")
    sublayers: list[Sublayer] = []
    for layer in range(cfg.num_layers):
        prefix = f"transformer/layer_{layer}"
        sublayers.append(_attn(params, f"{prefix}/attn", cfg.num_heads, cfg.key_size))
        sublayers.append(_mlp(params, f"{prefix}/mlp"))
    categorical = hasattr(enc_out, "encoding_map")
    output_basis = list(spaces["output"].basis)
    return Network(
        residual=tuple(direction(d.name, d.value) for d in spaces["residual"].basis),
        tokens=tuple(sorted(enc_in.encoding_map, key=enc_in.encoding_map.__getitem__)),
        w_e=_np(params["token_embed"]["embeddings"]),
        w_pos=_np(params["pos_embed"]["embeddings"]),
        sublayers=tuple(sublayers),
        attn_scale=1.0 / math.sqrt(cfg.key_size),
        output=tuple(direction(d.name, d.value) for d in output_basis),
        output_values=tuple(d.value for d in output_basis),
        categorical=categorical,
        bos=enc_in.bos_token,
        pad=enc_in.pad_token,
        causal=bool(cfg.causal),
    )


def from_assembled(
    assembled: Any, *, remove_noops: bool = True, prune_residual: bool = False
) -> TracrModel:
    """Convert an already-compiled Tracr model (the slow path's input) to torch.

    Args:
        assembled: a ``tracr.compiler.assemble.AssembledTransformerModel``.
        remove_noops: drop all-zero sublayers (reported in ``model.report``).
        prune_residual: drop residual directions no weight reads, as the fast path does
            (off by default here: the slow path keeps Tracr's residual layout exactly).

    Returns:
        A :class:`TracrModel` whose residual stream matches Tracr's to float precision.
    """
    network = network_from_assembled(assembled)
    meta = {
        "tracr_version": tracr_version(),
        "path": "assembled",
        "program": None,
        "max_len": network.w_pos.shape[0] - 1,
        "causal": network.causal,
    }
    return finish(network, meta, remove_noops=remove_noops, prune_residual=prune_residual)
