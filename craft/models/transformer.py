"""The two model families as plain ``nn.Module``s.

Shape glossary: B batch, T query positions, S key positions, H heads, D d_model,
E d_head, M d_mlp, V n_vocab (input, with BOS), O n_out (logits).

* **standard**: ``x = W_E[tok] + W_pos[pos]``; per block ``x += Attn(x)``, ``x += MLP(x)``;
  softmax attention ``softmax(q k^T / sqrt(E))`` (causal mask optional), ReLU MLP
  ``W_out relu(W_in x + b_in) + b_out``; logits ``x W_U + b_U``. No LayerNorm.
* **tensor**: same residual stream; bilinear attention
  ``pattern[t,s] = (q1_t . k1_s)(q2_t . k2_s) / E^2 * [s <= t]``, ``z_t = sum_s pattern v_s``;
  bilinear MLP ``W_D((W_L x) * (W_R x))``; no softmax, no norms, no biases: the whole
  network is a polynomial in its one-hot inputs. Positions learned or rotary on q1,k1,q2,k2.

Parameter names follow TransformerLens (``W_Q [H, D, E]``, ``W_O [H, E, D]``) so
weight-circuit code reads both families the same way.
"""

from __future__ import annotations

import math

import torch
from einops import einsum
from torch import nn

from craft.memory import require
from craft.models.config import ModelConfig
from craft.models.hooks import HookPoint


def _zeros(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.zeros(*shape))


def rotary(x: torch.Tensor, base: float) -> torch.Tensor:
    """Rotate ``x [B, T, H, E]`` by position: pairs (i, i + E/2) at frequency base^(-2i/E)."""
    t, e = x.shape[1], x.shape[-1]
    half = e // 2
    freq = base ** (-torch.arange(half, dtype=torch.float64, device=x.device) * 2 / e)
    ang = torch.arange(t, dtype=torch.float64, device=x.device)[:, None] * freq[None, :]  # [T, E/2]
    cos = ang.cos().to(x.dtype)[None, :, None, :]
    sin = ang.sin().to(x.dtype)[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class StandardAttention(nn.Module):
    """Softmax attention with per-head weights ``W_Q, W_K, W_V [H, D, E]``, ``W_O [H, E, D]``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h, d, e = cfg.n_heads, cfg.d_model, cfg.d_head
        self.cfg = cfg
        self.W_Q, self.W_K, self.W_V = _zeros(h, d, e), _zeros(h, d, e), _zeros(h, d, e)
        self.W_O = _zeros(h, e, d)
        if cfg.bias:
            self.b_Q, self.b_K, self.b_V = _zeros(h, e), _zeros(h, e), _zeros(h, e)
            self.b_O = _zeros(d)
        self.hook_scores = HookPoint()  # [B, H, T, S] before softmax
        self.hook_pattern = HookPoint()  # [B, H, T, S]
        self.hook_z = HookPoint()  # [B, T, H, E]
        self.hook_result = HookPoint()  # [B, T, H, D] each head's write to the residual

    def _proj(self, x: torch.Tensor, w: torch.Tensor, b: str) -> torch.Tensor:
        out = einsum(x, w, "b t d, h d e -> b t h e")
        return out + getattr(self, b) if self.cfg.bias else out

    def pattern(self, x: torch.Tensor) -> torch.Tensor:
        q = self._proj(x, self.W_Q, "b_Q")
        k = self._proj(x, self.W_K, "b_K")
        scores = einsum(q, k, "b t h e, b s h e -> b h t s") / math.sqrt(self.cfg.d_head)
        if self.cfg.causal:
            t = x.shape[1]
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(mask, float("-inf"))
        scores = self.hook_scores(scores)
        return self.hook_pattern(scores.softmax(dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pattern = self.pattern(x)
        v = self._proj(x, self.W_V, "b_V")
        z = self.hook_z(einsum(pattern, v, "b h t s, b s h e -> b t h e"))
        result = self.hook_result(einsum(z, self.W_O, "b t h e, h e d -> b t h d"))
        out = result.sum(dim=2)
        return out + self.b_O if self.cfg.bias else out


class BilinearAttention(nn.Module):
    """Polynomial attention: ``pattern = (q1.k1)(q2.k2)/E^2``, masked, never normalised."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h, d, e = cfg.n_heads, cfg.d_model, cfg.d_head
        self.cfg = cfg
        self.W_Q1, self.W_K1 = _zeros(h, d, e), _zeros(h, d, e)
        self.W_Q2, self.W_K2 = _zeros(h, d, e), _zeros(h, d, e)
        self.W_V, self.W_O = _zeros(h, d, e), _zeros(h, e, d)
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()
        self.hook_result = HookPoint()

    def _proj(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        out = einsum(x, w, "b t d, h d e -> b t h e")
        if self.cfg.positions == "rotary" and w is not self.W_V:
            out = rotary(out, self.cfg.rotary_base)
        return out

    def pattern(self, x: torch.Tensor) -> torch.Tensor:
        e = self.cfg.d_head
        s1 = einsum(
            self._proj(x, self.W_Q1), self._proj(x, self.W_K1), "b t h e, b s h e -> b h t s"
        )
        s2 = einsum(
            self._proj(x, self.W_Q2), self._proj(x, self.W_K2), "b t h e, b s h e -> b h t s"
        )
        pattern = s1 * s2 / (e * e)
        if self.cfg.causal:
            t = x.shape[1]
            keep = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            pattern = torch.where(keep, pattern, torch.zeros_like(pattern))
        return self.hook_pattern(pattern)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pattern = self.pattern(x)
        v = self._proj(x, self.W_V)
        z = self.hook_z(einsum(pattern, v, "b h t s, b s h e -> b t h e"))
        result = self.hook_result(einsum(z, self.W_O, "b t h e, h e d -> b t h d"))
        return result.sum(dim=2)


class ReluMLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.W_in, self.W_out = _zeros(cfg.d_model, cfg.d_mlp), _zeros(cfg.d_mlp, cfg.d_model)
        if cfg.bias:
            self.b_in, self.b_out = _zeros(cfg.d_mlp), _zeros(cfg.d_model)
        self.hook_pre = HookPoint()  # [B, T, M]
        self.hook_post = HookPoint()  # [B, T, M]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = x @ self.W_in + (self.b_in if self.cfg.bias else 0)
        post = self.hook_post(torch.relu(self.hook_pre(pre)))
        return post @ self.W_out + (self.b_out if self.cfg.bias else 0)


class BilinearMLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.W_L, self.W_R = _zeros(cfg.d_model, cfg.d_mlp), _zeros(cfg.d_model, cfg.d_mlp)
        self.W_D = _zeros(cfg.d_mlp, cfg.d_model)
        self.hook_post = HookPoint()  # [B, T, M] = (L x) * (R x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_post((x @ self.W_L) * (x @ self.W_R)) @ self.W_D


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        tensor = cfg.family == "tensor"
        self.attn = (BilinearAttention if tensor else StandardAttention)(cfg)
        self.mlp = ((BilinearMLP if tensor else ReluMLP)(cfg)) if cfg.d_mlp else None
        self.hook_resid_pre = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(x + self.hook_attn_out(self.attn(x)))
        if self.mlp is not None:
            x = x + self.hook_mlp_out(self.mlp(x))
        return self.hook_resid_post(x)


class Transformer(nn.Module):
    """A model of either family; ``forward(tokens [B, T]) -> logits [B, T, O]``.

    Models from the compiler also carry ``layout`` (the residual Layout) and ``meta``
    (provenance: spec name and hash, compiler version, constants, bounds).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if torch.get_default_device().type != "meta":  # the count itself builds on meta
            n = param_count(cfg)
            require(
                f"a model of {n:,} parameters",
                n * torch.get_default_dtype().itemsize,
                "ask for a smaller model (fewer tokens, a shorter max_len, a smaller --shape)",
            )
        self.cfg = cfg
        self.embed = nn.Module()
        self.embed.W_E = _zeros(cfg.n_vocab, cfg.d_model)
        self.pos_embed = nn.Module()
        if cfg.positions == "learned":
            self.pos_embed.W_pos = _zeros(cfg.n_ctx, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.unembed = nn.Module()
        self.unembed.W_U = _zeros(cfg.d_model, cfg.n_out)
        if cfg.bias:
            self.unembed.b_U = _zeros(cfg.n_out)
        self.hook_embed = HookPoint()
        self.hook_pos_embed = HookPoint()
        self.hook_resid_final = HookPoint()
        self.layout = None
        self.meta: dict = {}

    @property
    def family(self) -> str:
        return self.cfg.family

    def residual(self, tokens: torch.Tensor) -> torch.Tensor:
        """The embedding ``[B, T, D]`` (token plus learned positions)."""
        x = self.hook_embed(self.embed.W_E[tokens])
        if self.cfg.positions == "learned":
            x = x + self.hook_pos_embed(self.pos_embed.W_pos[: tokens.shape[1]])[None]
        return x

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[-1] > self.cfg.n_ctx:
            from specs.errors import CraftError

            raise CraftError(
                f"input of {tokens.shape[-1]} positions exceeds the model's n_ctx={self.cfg.n_ctx}",
                fix="pass shorter sequences",
            )
        x = self.residual(tokens)
        for block in self.blocks:
            x = block(x)
        x = self.hook_resid_final(x)
        logits = x @ self.unembed.W_U
        return logits + self.unembed.b_U if self.cfg.bias else logits

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def param_count(cfg: ModelConfig) -> int:
    """Parameters of ``Transformer(cfg)``, counted on the meta device (nothing allocated):
    what :class:`Transformer` checks against the memory limit before allocating."""
    with torch.device("meta"):
        return Transformer(cfg).n_params()
