"""Bring trained models from outside into the two model families.

Shape glossary: V input vocabulary, O outputs, P positions, D d_model, H heads,
E d_head, M d_mlp, T positions of a sequence.

* :func:`import_tlens`: a TransformerLens state dict of a norm-free model with optional
  ReLU MLPs (``embed.W_E [V, D]``, ``pos_embed.W_pos [P, D]``, ``blocks.{i}.attn.W_Q/W_K/W_V
  [H, D, E]``, ``W_O [H, E, D]``, biases ``b_Q/b_K/b_V [H, E]``, ``b_O [D]``,
  ``blocks.{i}.mlp.W_in [D, M]``, ``b_in [M]``, ``W_out [M, D]``, ``b_out [D]``,
  ``unembed.W_U [D, O]``, ``b_U [O]``) -> the standard family. The layouts agree name for
  name; absent biases are zero. TransformerLens's ``mask`` and ``IGNORE`` buffers are
  skipped. TransformerLens 4 bridge state dicts (``embed.weight``, ``blocks.{i}.attn.q.weight``,
  ...) are renamed into this layout first by :func:`craft.tlens.from_bridge`.
* :func:`import_bilinear_toy`: the published bilinear toy-model layout (``embed.weight
  [V, D]``, ``blocks.{i}.attn.{q1,k1,q2,k2,v}.weight [H E, D]`` and ``out.weight [D, H E]``
  as ``nn.Linear`` weights, optional ``blocks.{i}.mlp.{left,right}.weight [M, D]`` and
  ``down.weight [D, M]``, ``lm_head.weight [O, D]``) -> the tensor family. ``nn.Linear``
  computes ``x W^T``, so ``W_Q1[h] = q1.weight[h E:(h+1) E].T``; the source's pattern
  ``(q1.k1 / E)(q2.k2 / E)`` is ours ``(q1.k1)(q2.k2) / E^2``; rotary (base 10000, pairs
  ``(i, i + E/2)``) on q1, k1, q2, k2 is ours.

Each layout also has a reference forward pass (:func:`tlens_reference`,
:func:`bilinear_reference`), a loop over heads and positions written from the published
description, not from our model code; :func:`check_import` compares the two on random
tokens. Files are read with safetensors or ``torch.load(weights_only=True)``: no pickle.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from craft.models.config import ModelConfig
from craft.models.transformer import Transformer
from specs.errors import CraftError

StateDict = dict[str, torch.Tensor]
TLENS_SKIP = re.compile(r"blocks\.\d+\.attn\.(mask|IGNORE)$")


def read_state_dict(path: str | Path) -> StateDict:
    """Tensors from ``.safetensors`` or ``.pt/.pth/.bin`` (``weights_only`` unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise CraftError("no such file", where=str(path), fix="check the path")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path))
        elif suffix in (".pt", ".pth", ".bin"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise CraftError(
                f"unknown file type {suffix!r}", where=str(path), fix="use .safetensors or .pt"
            )
    except CraftError:
        raise
    except Exception as e:  # safetensors, unpickling and zip errors have no common base
        raise CraftError(
            f"cannot read tensors ({type(e).__name__}: {str(e)[:160]})",
            where=str(path),
            fix="pass a safetensors file or a torch state dict saved with torch.save",
        ) from None
    for wrapper in ("state_dict", "model"):  # {"state_dict": {...}} checkpoints
        if isinstance(obj, dict) and set(obj) == {wrapper} and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CraftError("not a flat dict of tensors", where=str(path), fix="save a state_dict")
    return obj


def _get(sd: StateDict, key: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    if key not in sd:
        raise CraftError("missing tensor", where=key, fix="check the --format and the file")
    t = sd[key]
    if shape is not None and tuple(t.shape) != shape:
        raise CraftError(
            f"shape {list(t.shape)}, expected {list(shape)} (the sizes the other tensors give)",
            where=key,
            fix="check the --format and --n-heads, and that the file holds one model's tensors",
        )
    return t.detach().to(torch.float64)


def _shape(sd: StateDict, key: str, dims: str) -> tuple[int, ...]:
    """The shape of tensor ``key``, checked to have the named dimensions, each >= 1.

    Args:
        sd: the state dict.
        key: the tensor's name.
        dims: its dimensions by the module glossary's letters, e.g. ``"H D E"``.

    Raises:
        CraftError: naming the tensor: missing, of another rank, or with an empty
            dimension (the shape found and the shape expected).
    """
    if key not in sd:
        raise CraftError("missing tensor", where=key, fix="check the --format and the file")
    shape, names = tuple(sd[key].shape), dims.split()
    if len(shape) != len(names) or 0 in shape:
        raise CraftError(
            f"shape {list(shape)}, expected [{', '.join(names)}]"
            f" ({len(names)} dimensions, each >= 1)",
            where=key,
            fix="check the --format and that the file holds this layout's tensors",
        )
    return shape


def _n_layers(sd: StateDict) -> int:
    found = {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
    if found != set(range(len(found))):
        raise CraftError(f"blocks {sorted(found)} are not numbered 0..n-1", where="blocks")
    return len(found)


def _reject_unknown(sd: StateDict, known: set[str], what: str) -> None:
    unknown = sorted(k for k in sd if k not in known and not TLENS_SKIP.match(k))
    if unknown:
        raise CraftError(
            f"unsupported tensors {unknown[:4]}{' ...' if len(unknown) > 4 else ''}",
            where=unknown[0],
            fix=f"the {what} importer takes norm-free models with optional MLPs (ReLU;"
            " bilinear-toy: bilinear) and no other parameters",
        )


def import_tlens(sd: StateDict, *, n_ctx: int | None = None, causal: bool = True) -> Transformer:
    """A TransformerLens norm-free state dict (optional ReLU MLPs) -> a standard-family model.

    Args:
        sd: the state dict (``model.state_dict()``).
        n_ctx: positions; default the rows of ``pos_embed.W_pos`` (required without it).
        causal: TransformerLens's ``attention_dir == "causal"``.
    """
    n_vocab, d_model = _shape(sd, "embed.W_E", "V D")
    n_layers = _n_layers(sd)
    if n_layers == 0:
        raise CraftError("no blocks.{i}.attn tensors", where="blocks.0.attn.W_Q")
    n_heads, _, d_head = _shape(sd, "blocks.0.attn.W_Q", "H D E")
    n_out = _shape(sd, "unembed.W_U", "D O")[1]
    mlp = "blocks.0.mlp.W_in"
    d_mlp = _shape(sd, mlp, "D M")[1] if mlp in sd else 0
    learned = "pos_embed.W_pos" in sd
    table = _shape(sd, "pos_embed.W_pos", "P D")[0] if learned else None
    n_ctx = n_ctx or table
    if n_ctx is None or (table is not None and n_ctx > table):
        raise CraftError(
            f"n_ctx {n_ctx} is not available", where="pos_embed.W_pos", fix=f"pass n_ctx <= {table}"
        )
    biases = [k for k in sd if k.rsplit(".", 1)[-1].startswith("b_")]
    bias = any(bool(sd[k].any()) for k in biases)
    if not bias:  # all zero (an export of a model without biases): import none
        sd = {k: v for k, v in sd.items() if k not in biases}
    positions = "learned" if learned else "none"
    cfg = ModelConfig("standard", n_layers, n_heads, d_model, d_head, d_mlp, n_vocab, n_out,
                      n_ctx, causal=causal, positions=positions, bias=bias)  # fmt: skip
    with torch.device("meta"):  # the shapes, without memory: every tensor is checked first
        shapes = {k: tuple(v.shape) for k, v in Transformer(cfg).state_dict().items()}
    _reject_unknown(sd, set(shapes), "TransformerLens")
    state = {}
    for key, shape in shapes.items():
        if key == "pos_embed.W_pos":
            state[key] = _get(sd, key, (table, d_model))[:n_ctx]
        elif key.rsplit(".", 1)[-1].startswith("b_") and key not in sd:
            state[key] = torch.zeros(shape, dtype=torch.float64)
        else:
            state[key] = _get(sd, key, shape)
    model = Transformer(cfg).double()
    model.load_state_dict(state, strict=True)
    return model.eval()


def _heads_in(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``nn.Linear`` weight ``[H E, D]`` -> ``[H, D, E]``."""
    return w.T.reshape(w.shape[1], n_heads, -1).permute(1, 0, 2)


def import_bilinear_toy(
    sd: StateDict,
    *,
    n_heads: int,
    n_ctx: int = 512,
    rotary: bool = True,
    rotary_base: float = 10000.0,
) -> Transformer:
    """The published bilinear toy-model layout -> a tensor-family model.

    Args:
        sd: the state dict.
        n_heads: heads per layer (the layout stores ``H E`` rows, so it cannot be inferred).
        n_ctx: positions the imported model accepts (rotary has no table).
        rotary: rotary positions on q1, k1, q2, k2 (False: no positions).
        rotary_base: base of the rotary frequencies.
    """
    n_vocab, d_model = _shape(sd, "embed.weight", "V D")
    n_layers = _n_layers(sd)
    if n_layers == 0:
        raise CraftError("no blocks.{i}.attn tensors", where="blocks.0.attn.q1.weight")
    width = _shape(sd, "blocks.0.attn.q1.weight", "HE D")[0]
    if n_heads < 1 or width % n_heads:
        raise CraftError(
            f"{width} query rows do not split into {n_heads} heads",
            where="blocks.0.attn.q1.weight",
            fix="pass the model's --n-heads",
        )
    d_head = width // n_heads
    left = "blocks.0.mlp.left.weight"
    d_mlp = _shape(sd, left, "M D")[0] if left in sd else 0
    n_out = _shape(sd, "lm_head.weight", "O D")[0]
    positions = "rotary" if rotary else "none"
    if rotary and d_head % 2:
        raise CraftError(f"rotary needs an even d_head, got {d_head}", where="--n-heads")
    cfg = ModelConfig("tensor", n_layers, n_heads, d_model, d_head, d_mlp, n_vocab, n_out, n_ctx,
                      positions=positions, rotary_base=rotary_base)  # fmt: skip
    attn = ("q1", "k1", "q2", "k2", "v", "out")
    mlp = ("left", "right", "down") if d_mlp else ()
    known = {"embed.weight", "lm_head.weight"}
    known |= {f"blocks.{i}.attn.{n}.weight" for i in range(n_layers) for n in attn}
    known |= {f"blocks.{i}.mlp.{n}.weight" for i in range(n_layers) for n in mlp}
    _reject_unknown(sd, known, "bilinear-toy")
    hd = (n_heads * d_head, d_model)
    state = {"embed.W_E": _get(sd, "embed.weight"),
             "unembed.W_U": _get(sd, "lm_head.weight", (n_out, d_model)).T}  # fmt: skip
    for i in range(n_layers):
        a = f"blocks.{i}.attn."
        for src in ("q1", "k1", "q2", "k2", "v"):
            state[a + "W_" + src.upper()] = _heads_in(_get(sd, f"{a}{src}.weight", hd), n_heads)
        out = _get(sd, f"{a}out.weight", (d_model, n_heads * d_head))
        state[a + "W_O"] = out.T.reshape(n_heads, d_head, d_model)
        if d_mlp:
            m = f"blocks.{i}.mlp."
            state[m + "W_L"] = _get(sd, m + "left.weight", (d_mlp, d_model)).T
            state[m + "W_R"] = _get(sd, m + "right.weight", (d_mlp, d_model)).T
            state[m + "W_D"] = _get(sd, m + "down.weight", (d_model, d_mlp)).T
    model = Transformer(cfg).double()
    model.load_state_dict(state, strict=True)
    return model.eval()


def tlens_reference(sd: StateDict, tokens: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """TransformerLens forward (attention, then a ReLU MLP where the block has one), one
    head and query at a time: ``[B, T, O]``."""
    w = {k: v.to(torch.float64) for k, v in sd.items()}
    zero = torch.zeros((), dtype=torch.float64)
    x = w["embed.W_E"][tokens]
    t_len = tokens.shape[1]
    if "pos_embed.W_pos" in w:
        x = x + w["pos_embed.W_pos"][:t_len]
    for i in range(_n_layers(sd)):
        p = f"blocks.{i}.attn."
        out = x + w.get(p + "b_O", zero)
        for h in range(w[p + "W_Q"].shape[0]):
            q, k, v = (
                x @ w[p + "W_" + n][h] + (w[p + "b_" + n][h] if p + "b_" + n in w else zero)
                for n in "QKV"
            )
            for t in range(t_len):
                keys = t + 1 if causal else t_len
                scores = (k[:, :keys] * q[:, t : t + 1]).sum(-1) / math.sqrt(q.shape[-1])
                z = (torch.softmax(scores, dim=-1)[..., None] * v[:, :keys]).sum(1)
                out[:, t] = out[:, t] + z @ w[p + "W_O"][h]
        x = out
        m = f"blocks.{i}.mlp."
        if m + "W_in" in w:
            hidden = torch.relu(x @ w[m + "W_in"] + w.get(m + "b_in", zero))
            x = x + hidden @ w[m + "W_out"] + w.get(m + "b_out", zero)
    return x @ w["unembed.W_U"] + w.get("unembed.b_U", zero)


def _rope(x: torch.Tensor, pos: int, base: float) -> torch.Tensor:
    """Rotate ``x [..., E]`` to position ``pos`` as complex numbers ``x_i + j x_{i+E/2}``."""
    half = x.shape[-1] // 2
    theta = base ** (-2 * torch.arange(half, dtype=torch.float64) / x.shape[-1])
    z = torch.complex(x[..., :half], x[..., half:]) * torch.polar(
        torch.ones_like(theta), pos * theta
    )
    return torch.cat([z.real, z.imag], dim=-1)


def bilinear_reference(
    sd: StateDict, tokens: torch.Tensor, *, n_heads: int, rotary: bool = True, base: float = 10000.0
) -> torch.Tensor:
    """The bilinear toy model's forward, one head and query at a time: ``[B, T, O]``."""
    w = {k: v.to(torch.float64) for k, v in sd.items()}
    x = w["embed.weight"][tokens]
    t_len = tokens.shape[1]
    for i in range(_n_layers(sd)):
        p = f"blocks.{i}.attn."
        proj = {n: (x @ w[f"{p}{n}.weight"].T).unflatten(-1, (n_heads, -1)) for n in
                ("q1", "k1", "q2", "k2", "v")}  # fmt: skip
        e = proj["v"].shape[-1]
        if rotary:
            for n in ("q1", "k1", "q2", "k2"):
                proj[n] = torch.stack([_rope(proj[n][:, t], t, base) for t in range(t_len)], 1)
        z = torch.zeros_like(proj["v"])
        for h in range(n_heads):
            for t in range(t_len):
                s1 = (proj["q1"][:, t : t + 1, h] * proj["k1"][:, : t + 1, h]).sum(-1) / e
                s2 = (proj["q2"][:, t : t + 1, h] * proj["k2"][:, : t + 1, h]).sum(-1) / e
                z[:, t, h] = ((s1 * s2)[..., None] * proj["v"][:, : t + 1, h]).sum(1)
        x = x + z.flatten(-2) @ w[f"{p}out.weight"].T
        m = f"blocks.{i}.mlp."
        if m + "left.weight" in w:
            hidden = (x @ w[m + "left.weight"].T) * (x @ w[m + "right.weight"].T)
            x = x + hidden @ w[m + "down.weight"].T
    return x @ w["lm_head.weight"].T


@dataclass(frozen=True)
class ImportCheck:
    """Imported model against the source's reference forward on random tokens.

    Attributes:
        max_abs_diff: largest ``|ours - reference|`` over all tokens and logits.
        max_abs_logit: largest ``|reference|``.
        relative: largest per-position ratio ``max_o |diff| / max_o |reference|``: each
            position is judged on its own scale, since a polynomial (tensor-family)
            network's logits can grow by orders of magnitude along the sequence.
        n_tokens: positions compared.
    """

    max_abs_diff: float
    max_abs_logit: float
    relative: float
    n_tokens: int

    def ok(self, tol: float = 1e-4) -> bool:
        return self.relative <= tol


def check_import(
    source_logits_fn: Callable[[torch.Tensor], torch.Tensor],
    model: Transformer,
    n_vocab: int,
    n_ctx: int,
    *,
    n_seqs: int = 4,
    length: int = 24,
    seed: int = 0,
) -> ImportCheck:
    """Compare ``model`` (in float64) with ``source_logits_fn(tokens [B, T]) -> [B, T, O]``."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, n_vocab, (n_seqs, min(length, n_ctx)), generator=g)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny per-head ops: a thread pool only waits (40x on a busy CPU)
    try:
        with torch.no_grad():
            ours = copy.deepcopy(model).double()(tokens)
            ref = source_logits_fn(tokens).to(torch.float64)
    finally:
        torch.set_num_threads(threads)
    if ours.shape != ref.shape:
        raise CraftError(f"logits of shape {tuple(ours.shape)}, source {tuple(ref.shape)}")
    diff = (ours - ref).abs().amax(-1)  # [B, T]
    scale = ref.abs().amax(-1)
    floor = max(float(scale.max()) * 1e-9, 1e-300)
    relative = float((diff / scale.clamp_min(floor)).max())
    return ImportCheck(float(diff.max()), float(scale.max()), relative, tokens.numel())
