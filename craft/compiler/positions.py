"""Position-free models: a first layer that re-derives the positional embedding.

:func:`derive_positions` turns a compiled standard-family model with a learned position
table ``W_pos [P, D]`` into one with ``positions = "none"`` that computes, inside the
network, exactly the vector ``W_pos[t]`` the table added at position ``t``; every later
layer is the original model's, shifted up by one layer. The residual gains two
directions: ``pos-share``, plus ``bos`` and ``const`` when the layout has no ``bos``
and ``one``.

Derivation (layer 0; positions ``t = 0..N``, ``N = P - 1``; BOS sits at ``t = 0`` only):

* **Attention** (component ``position-share``, head 0). ``W_Q = W_K = 0`` makes every
  score 0, so causal softmax attends uniformly over ``s <= t``: ``pattern[t, s] =
  1/(t+1)``. ``W_V`` reads ``bos`` (1 at ``s = 0``, 0 elsewhere) and ``W_O`` writes it to
  ``pos-share``, so ``pos-share(t) = sum_s 1/(t+1) [s = 0] = f_t = 1/(t+1)``: one scalar,
  strictly decreasing in ``t``.
* **MLP** (component ``position-code``). The points ``u_0 < u_1 < ... < u_N`` with ``u_i =
  f_{N-i}`` carry the values ``y_i = W_pos[N - i]``. The piecewise-linear interpolant
  ``g(f) = y_0 + sum_{i<N} c_i relu(f - u_i)`` with slopes ``m_i = (y_{i+1} - y_i) /
  (u_{i+1} - u_i)``, ``c_0 = m_0`` and ``c_i = m_i - m_{i-1}`` passes through every point
  (on ``[u_j, u_{j+1}]`` the active units sum to slope ``m_j``), so unit ``i`` has input
  weight 1 on ``pos-share``, bias ``-u_i``, and output ``c_i``; one more unit writes
  ``y_0`` (biases are weights on a constant direction, see :func:`_first_layer`). At
  position ``t`` the MLP writes ``g(f_t) = W_pos[t]``: exactly the embedding.

Nothing else reads ``pos-share`` or ``bos`` (the original weights are zero on the new
directions), and hidden units padded into the original MLPs are identically zero, so in
exact arithmetic the model computes the same logits at every position of every context.

Float error. ``f_t`` is one correctly rounded division (relative error ``eps``); the
interpolant's slopes grow like ``1/(u_{i+1} - u_i) = (t+1)(t+2)``, so the written code
is off by about ``eps * t * |W_pos|`` (the terms ``c_i (f - u_i)`` are each about ``t``
in size). :func:`code_error` measures it at every position in float32 and float64;
:func:`derive_positions` records both in ``meta["positions"]``.

The tensor family has no softmax to normalise the uniform sum (it counts ``t + 1``
instead) and a polynomial of bounded degree cannot turn a count into a one-hot code
of ``max_len + 1`` positions, so it is refused.
"""

from __future__ import annotations

import dataclasses

import torch

from craft.models.components import ComponentKind, ComponentRecord
from craft.models.config import ModelConfig
from craft.models.layout import BOS_DIR, ONE, Direction, Layout
from craft.models.transformer import Transformer
from specs.errors import CraftError

SHARE = Direction("pos-share")  # 1/(t+1): BOS's share of uniform attention at t
FLOAT32_LIMIT = 128
"""The largest ``max_len`` whose derived code meets the compiled bound in float32: the
code's error grows like ``1.3e-7 t^2`` (1.3e-3 at 128, 5.5e-3 at 256, where the
induction spec's derived model misses its bound by 18 nats). Measured by
``python benchmarks/positions.py``."""
CONST = Direction("const")  # 1 at every position (models whose layout has no one + bos)
_RESIDUAL = ("W_E", "W_U", "W_Q", "W_K", "W_V", "W_O", "b_O", "W_in", "W_out", "b_out")


def _check(model: Transformer) -> None:
    if model.cfg.family != "standard":
        raise CraftError(
            "the tensor family cannot derive positions: its attention is not normalised, "
            "so a uniform head counts t+1, and no polynomial of bounded degree turns a "
            "count into a one-hot code of every position",
            where="--positions none",
            fix="use --family standard, or keep learned positions",
        )
    if model.cfg.positions != "learned" or not model.cfg.causal:
        raise CraftError(
            f"a model with positions {model.cfg.positions!r} (causal={model.cfg.causal}) "
            "has no learned table to derive",
            where="--positions none",
            fix="derive positions from a causal model with learned positions",
        )


def _grown(cfg: ModelConfig, extra: int) -> ModelConfig:
    d_mlp = max(cfg.d_mlp, cfg.n_ctx)  # N = n_ctx - 1 knots and one constant unit
    fields = cfg.to_json() | {"n_layers": cfg.n_layers + 1, "d_model": cfg.d_model + extra}
    return ModelConfig(**(fields | {"d_mlp": d_mlp, "positions": "none"}))


def _pad(old: torch.Tensor, new: torch.Tensor) -> None:
    """Copy ``old`` into the leading corner of ``new`` (new residual dims and units: 0)."""
    new.zero_()
    new[tuple(slice(0, n) for n in old.shape)] = old


def interpolant(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Knots ``u [N]``, unit outputs ``c [N, D]`` and the bias ``y_0 [D]`` of the
    piecewise-linear ``g`` with ``g(1/(t+1)) = table[t]`` (module docstring), in float64."""
    table = table.detach().to(torch.float64)
    n = table.shape[0] - 1
    u = 1.0 / (torch.arange(n, -1, -1, dtype=torch.float64) + 1.0)  # u_i = f_{N-i}
    y = table.flip(0)  # y_i = table[N - i]
    slopes = (y[1:] - y[:-1]) / (u[1:] - u[:-1])[:, None]  # [N, D]
    c = torch.cat([slopes[:1], slopes[1:] - slopes[:-1]])
    return u[:-1], c, y[0]


def _first_layer(model: Transformer, layout: Layout, table: torch.Tensor) -> None:
    """Weights of layer 0: the uniform head (attention) and the interpolant (MLP).

    Biases are written as weights on the constant ``1`` the residual carries at every
    position (``one + bos`` in a crafted layout, ``const`` otherwise), so models without
    biases derive positions too: unit ``i < N`` is ``relu(pos-share - u_i * 1)``, unit
    ``N`` is ``relu(1) = 1`` and writes ``y_0``.
    """
    block = model.blocks[0]
    bos, share = layout.index(BOS_DIR), layout.index(SHARE)
    const = layout.indices(_constant(layout))
    block.attn.W_V[0, bos, 0] = 1.0
    block.attn.W_O[0, 0, share] = 1.0
    knots, outs, base = interpolant(table)
    n, width = len(knots), table.shape[1]
    units = torch.arange(n)
    block.mlp.W_in[share, units] = 1.0
    for c in const:
        block.mlp.W_in[c, units] = (-knots).to(block.mlp.W_in.dtype)
        block.mlp.W_in[c, n] = 1.0
    block.mlp.W_out[units, :width] = outs.to(block.mlp.W_out.dtype)
    block.mlp.W_out[n, :width] = base.to(block.mlp.W_out.dtype)


def _constant(layout: Layout) -> tuple[Direction, ...]:
    """Directions that sum to 1 at every position."""
    return (ONE, BOS_DIR) if ONE in layout else (CONST,)


def _layout(model: Transformer) -> Layout:
    old = model.layout or Layout(tuple(Direction("r", i) for i in range(model.cfg.d_model)))
    need = (BOS_DIR, SHARE) + (() if ONE in old and BOS_DIR in old else (CONST,))
    return Layout(old.directions + tuple(d for d in need if d not in old))


def _dtype(model: Transformer, dtype: str | None) -> torch.dtype:
    """float32 up to :data:`FLOAT32_LIMIT` positions, float64 beyond (or when asked)."""
    max_len = model.cfg.n_ctx - 1
    if dtype == "float32" and max_len > FLOAT32_LIMIT:
        raise CraftError(
            f"a derived position code of max_len {max_len} is too coarse in float32 "
            f"(its float32 limit is max_len {FLOAT32_LIMIT}: benchmarks/positions.py)",
            where="--dtype float32",
            fix="drop --dtype (the model then runs in float64), or lower max_len",
        )
    wide = dtype == "float64" or next(model.parameters()).dtype == torch.float64
    return torch.float64 if wide or max_len > FLOAT32_LIMIT else torch.float32


@torch.no_grad()
def derive_positions(model: Transformer, dtype: str | None = None) -> Transformer:
    """A position-free copy of ``model`` (see the module docstring); ``model`` is unchanged.

    Args:
        model: a causal standard-family model with learned positions.
        dtype: None: float32 up to max_len :data:`FLOAT32_LIMIT`, float64 beyond
            (recorded in ``meta["dtype"]``; ``load_model`` restores it); ``"float32"``
            beyond the limit is refused.

    Raises:
        CraftError: a tensor-family, non-causal, or position-free model, or float32
            asked beyond its limit.
    """
    _check(model)
    layout = _layout(model)
    extra = len(layout) - model.cfg.d_model
    dtype_ = _dtype(model, dtype)
    out = Transformer(_grown(model.cfg, extra)).to(dtype_)
    old = {k: v.to(dtype_) for k, v in model.state_dict().items()}
    new = out.state_dict()
    for key, value in old.items():
        if key == "pos_embed.W_pos":
            continue
        layer = key.split(".")
        if layer[0] == "blocks":
            key = ".".join(["blocks", str(int(layer[1]) + 1), *layer[2:]])
        _pad(value, new[key])
    if BOS_DIR not in (model.layout or ()):
        new["embed.W_E"][model.cfg.n_vocab - 1, layout.index(BOS_DIR)] = 1.0
    if CONST in layout:
        new["embed.W_E"][:, layout.index(CONST)] = 1.0
    _first_layer(out, layout, old["pos_embed.W_pos"])
    out.layout = layout if model.layout is not None else None
    out.meta = _meta(model, out, old["pos_embed.W_pos"])
    return out


def _meta(model: Transformer, out: Transformer, table: torch.Tensor) -> dict:
    meta = dict(model.meta)
    records = [ComponentRecord.from_json(r) for r in meta.get("components", [])]
    shifted = [dataclasses.replace(r, layer=r.layer + 1) for r in records]
    share = ComponentRecord(
        "position-share", ComponentKind.POSITION_SHARE, 0, "attn", 0, (), (BOS_DIR,), (SHARE,)
    )
    writes = tuple(out.layout.named("pos")) if out.layout is not None else ()
    code = ComponentRecord(
        "position-code", ComponentKind.POSITION_CODE, 0, "mlp", None, (), (SHARE,), writes
    )
    meta["components"] = [r.to_json() for r in (share, code, *shifted)]
    meta["positions"] = {
        "derived_from": "learned",
        "code_error": code_error(out, table),
        "float32_limit": FLOAT32_LIMIT,
    }
    meta["dtype"] = str(next(out.parameters()).dtype).removeprefix("torch.")
    return meta


@torch.no_grad()
def position_code(model: Transformer, n: int | None = None) -> torch.Tensor:
    """What layer 0 of a derived model writes at positions ``0..n-1`` ([n, D]): the
    residual after layer 0 minus the embedding, on ``BOS`` followed by token 0 (the
    code does not depend on the tokens after BOS: layer 0 reads only ``bos``)."""
    n = n or model.cfg.n_ctx
    tokens = torch.zeros(1, n, dtype=torch.long)
    tokens[0, 0] = model.cfg.n_vocab - 1
    x = model.residual(tokens)
    block = model.blocks[0]
    return block(x)[0] - x[0]


@torch.no_grad()
def code_error(model: Transformer, table: torch.Tensor) -> float:
    """Largest ``|position code - W_pos|`` over every position and residual dimension,
    in the model's own dtype (the interpolant's rounding; module docstring)."""
    code = position_code(model).to(torch.float64)[:, : table.shape[1]]
    return float((code - table.to(torch.float64)).abs().max())
