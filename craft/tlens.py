"""TransformerLens 4's two weight formats and its config, on the craft side.

TransformerLens 4 removed ``HookedTransformer``; its models are ``TransformerBridge``s.
A native bridge is built from a ``TransformerBridgeConfig`` (``boot_native``) and loads
either of two state-dict layouts:

* **HookedTransformer format** (what ``convert_tl_checkpoint`` reads): the per-head
  tensors craft's standard family already uses, name for name: ``embed.W_E [V, D]``,
  ``pos_embed.W_pos [P, D]``, ``blocks.{i}.attn.W_Q/W_K/W_V [H, D, E]``, ``W_O [H, E, D]``,
  ``b_Q/b_K/b_V [H, E]``, ``b_O [D]``, ``blocks.{i}.mlp.W_in [D, M]``, ``b_in [M]``,
  ``W_out [M, D]``, ``b_out [D]``, ``unembed.W_U [D, O]``, ``b_U [O]``.
* **bridge format** (``bridge.state_dict()``): ``nn.Linear`` weights, heads side by side:
  ``embed.weight [V, D]``, ``pos_embed.weight [P, D]``, ``blocks.{i}.attn.{q,k,v}.weight
  [H E, D]`` and ``.bias [H E]``, ``o.weight [D, H E]``, ``o.bias [D]``,
  ``blocks.{i}.mlp.in.weight [M, D]``, ``in.bias [M]``, ``out.weight [D, M]``,
  ``out.bias [D]``, ``unembed.weight [O, D]``, ``unembed.bias [O]``.

``nn.Linear`` computes ``x W^T + b``, so ``W_Q[h] = q.weight[h E:(h+1) E].T`` and
``W_O[h] = o.weight[:, h E:(h+1) E].T``. The bridge always carries every bias; craft's
models without biases export zeros there, which changes nothing.

Shape glossary: V input vocabulary, O outputs, P positions, D d_model, H heads, E d_head,
M d_mlp.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from craft.models.config import ModelConfig
from craft.models.transformer import Transformer
from specs.errors import CraftError

StateDict = dict[str, torch.Tensor]

# Exactly the TransformerBridgeConfig keyword arguments an export writes to config.json.
CONFIG_KEYS = (
    "d_model", "n_layers", "n_heads", "d_head", "d_mlp", "attn_only", "n_ctx", "d_vocab",
    "d_vocab_out", "act_fn", "normalization_type", "attention_dir",
    "positional_embedding_type", "architecture",
)  # fmt: skip
ARCHITECTURE = "TransformerLensNative"
TENSOR_REFUSAL = "the tensor family (bilinear, no softmax) has no TransformerLens counterpart"


def refuse_tensor(model: Transformer, where: str) -> None:
    """Raise the one-line refusal for a tensor-family model."""
    if model.cfg.family != "standard":
        raise CraftError(TENSOR_REFUSAL, where=where, fix="export a standard-family model")


def bridge_config(cfg: ModelConfig) -> dict[str, Any]:
    """The ``TransformerBridgeConfig`` keyword arguments of a standard-family model.

    No LayerNorm, ReLU MLPs (or ``attn_only``), learned positions (``standard``; a model
    without positions exports a zero table), causal or bidirectional attention, an
    unembedding with its own width (``d_vocab_out``).
    """
    return {
        "d_model": cfg.d_model,
        "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads,
        "d_head": cfg.d_head,
        "d_mlp": cfg.d_mlp or None,  # None: attention-only
        "attn_only": cfg.d_mlp == 0,
        "n_ctx": cfg.n_ctx,
        "d_vocab": cfg.n_vocab,
        "d_vocab_out": cfg.n_out,
        "act_fn": "relu",
        "normalization_type": None,
        "attention_dir": "causal" if cfg.causal else "bidirectional",
        "positional_embedding_type": "standard",
        "architecture": ARCHITECTURE,
    }


def hooked_state_dict(model: Transformer) -> StateDict:
    """The HookedTransformer-format state dict of a standard-family model.

    Every bias the bridge has is present (zeros where craft's model has none); a model
    without positions gets a zero ``pos_embed.W_pos [n_ctx, D]``.
    """
    cfg, sd = model.cfg, {k: v.detach() for k, v in model.state_dict().items()}
    ref = sd["embed.W_E"]

    def take(key: str, *shape: int) -> torch.Tensor:
        return sd[key] if key in sd else ref.new_zeros(shape)

    out = {"embed.W_E": sd["embed.W_E"], "pos_embed.W_pos": take("pos_embed.W_pos", cfg.n_ctx,
                                                                 cfg.d_model)}  # fmt: skip
    for i in range(cfg.n_layers):
        a = f"blocks.{i}.attn."
        for n in "QKV":
            out[a + "W_" + n] = sd[a + "W_" + n]
            out[a + "b_" + n] = take(a + "b_" + n, cfg.n_heads, cfg.d_head)
        out[a + "W_O"], out[a + "b_O"] = sd[a + "W_O"], take(a + "b_O", cfg.d_model)
        if cfg.d_mlp:
            m = f"blocks.{i}.mlp."
            out[m + "W_in"], out[m + "b_in"] = sd[m + "W_in"], take(m + "b_in", cfg.d_mlp)
            out[m + "W_out"], out[m + "b_out"] = sd[m + "W_out"], take(m + "b_out", cfg.d_model)
    out["unembed.W_U"] = sd["unembed.W_U"]
    out["unembed.b_U"] = take("unembed.b_U", cfg.n_out)
    return {k: v.contiguous().cpu() for k, v in out.items()}


def is_bridge_format(sd: StateDict) -> bool:
    """Whether ``sd`` uses the bridge's ``nn.Linear`` keys (``embed.weight``, ...)."""
    return "embed.weight" in sd


_BRIDGE_SUFFIX = {  # bridge key suffix -> HookedTransformer suffix
    "embed.weight": "embed.W_E",
    "pos_embed.weight": "pos_embed.W_pos",
    "unembed.weight": "unembed.W_U",
    "unembed.bias": "unembed.b_U",
    "attn.o.bias": "attn.b_O",
    "mlp.in.weight": "mlp.W_in",
    "mlp.in.bias": "mlp.b_in",
    "mlp.out.weight": "mlp.W_out",
    "mlp.out.bias": "mlp.b_out",
}
_HEADS = re.compile(r"^(blocks\.\d+\.attn)\.([qkvo])\.(weight|bias)$")


def _split_heads(key: str, t: torch.Tensor, n_heads: int) -> tuple[str, torch.Tensor]:
    """One attention tensor of the bridge -> HookedTransformer name and per-head shape."""
    prefix, proj, kind = _HEADS.match(key).groups()  # type: ignore[union-attr]
    width = t.shape[0] if proj != "o" else t.shape[-1]
    if width % n_heads:
        raise CraftError(
            f"{width} rows do not split into {n_heads} heads", where=key, fix="pass --n-heads"
        )
    if proj == "o":  # [D, H E] -> [H, E, D]
        return f"{prefix}.W_O", t.T.reshape(n_heads, width // n_heads, t.shape[0])
    name = f"{prefix}.{'W' if kind == 'weight' else 'b'}_{proj.upper()}"
    if kind == "bias":  # [H E] -> [H, E]
        return name, t.reshape(n_heads, -1)
    return name, t.reshape(n_heads, -1, t.shape[1]).transpose(1, 2)  # [H E, D] -> [H, D, E]


def from_bridge(sd: StateDict, n_heads: int) -> StateDict:
    """A bridge-format state dict -> HookedTransformer format (no data copied but views).

    Raises:
            CraftError: a key of neither layout (a LayerNorm, a gate), naming it.
    """
    out = {}
    for key, t in sd.items():
        if _HEADS.match(key) and not key.endswith("o.bias"):
            name, t = _split_heads(key, t, n_heads)
        else:
            suffix = next((s for s in _BRIDGE_SUFFIX if key == s or key.endswith("." + s)), None)
            if suffix is None:
                raise CraftError(
                    "unsupported tensor (not an embedding, attention, ReLU MLP or unembedding"
                    " weight of a norm-free model)",
                    where=key,
                    fix="import a norm-free model without gated MLPs",
                )
            name = key[: len(key) - len(suffix)] + _BRIDGE_SUFFIX[suffix]
        out[name] = t.T if name.endswith(("W_U", "W_in", "W_out")) else t
    return out


def read_config(obj: Any, where: str) -> dict[str, Any]:
    """The fields craft needs from an exported ``config.json``, checked.

    Returns:
        ``{"n_heads": int, "causal": bool, "n_ctx": int}``.

    Raises:
        CraftError: not an object, a field missing or of the wrong type, or a model craft
            cannot run (LayerNorm, an activation other than ReLU, rotary positions).
    """
    if not isinstance(obj, dict):
        raise CraftError("is not a JSON object", where=where, fix="pass an exported config.json")
    for key in ("n_heads", "n_ctx"):
        if isinstance(obj.get(key), bool) or not isinstance(obj.get(key), int) or obj[key] < 1:
            raise CraftError(f"{key} is {obj.get(key)!r}", where=where, fix=f"{key} >= 1")
    unsupported = {
        "normalization_type": (obj.get("normalization_type"), (None,)),
        "act_fn": (obj.get("act_fn", "relu"), ("relu",)),
        "attention_dir": (obj.get("attention_dir", "causal"), ("causal", "bidirectional")),
        "positional_embedding_type": (obj.get("positional_embedding_type", "standard"),
                                      ("standard",)),
    }  # fmt: skip
    for key, (value, allowed) in unsupported.items():
        if value not in allowed:
            raise CraftError(
                f"{key} is {value!r}; craft's standard family has {allowed}",
                where=where,
                fix="import a norm-free model with ReLU MLPs and learned positions",
            )
    causal = obj.get("attention_dir", "causal") == "causal"
    return {"n_heads": obj["n_heads"], "causal": causal, "n_ctx": obj["n_ctx"]}


def bridge_reference(
    sd: StateDict, tokens: torch.Tensor, *, n_heads: int, causal: bool = True
) -> torch.Tensor:
    """The bridge's forward written from its ``nn.Linear`` layout (``x W^T + b``, heads
    side by side, split with ``view``), independent of :func:`from_bridge`: ``[B, T, O]``."""
    w = {k: v.to(torch.float64) for k, v in sd.items()}
    b, t = tokens.shape
    x = w["embed.weight"][tokens] + w["pos_embed.weight"][:t]
    keep = torch.ones(t, t, dtype=torch.bool).tril() if causal else torch.ones(t, t).bool()
    i = 0
    while f"blocks.{i}.attn.q.weight" in w:
        a, m = f"blocks.{i}.attn.", f"blocks.{i}.mlp."

        def lin(name: str, h: torch.Tensor, a: str = a) -> torch.Tensor:
            return h @ w[a + name + ".weight"].T + w.get(a + name + ".bias", 0)

        q, k, v = (lin(n, x).view(b, t, n_heads, -1).transpose(1, 2) for n in "qkv")
        scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
        pattern = scores.masked_fill(~keep, float("-inf")).softmax(-1)
        x = x + lin("o", (pattern @ v).transpose(1, 2).reshape(b, t, -1))
        if m + "in.weight" in w:
            x = x + lin("out", torch.relu(lin("in", x, m)), m)
        i += 1
    return x @ w["unembed.weight"].T + w.get("unembed.bias", 0)
