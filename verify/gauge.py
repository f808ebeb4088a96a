"""Symmetries of the weights: transforms that leave a model's function unchanged.

Used to test that weight-circuit comparisons are gauge-invariant. Shape glossary:
D d_model, E d_head, H heads. Row-vector convention (``x [D]``, reads ``x W``).

* residual change of basis ``R [D, D]`` (invertible, or orthogonal): everything that
  writes to the residual is multiplied by ``R`` on the right (``W_E, W_pos, W_O, b_O,
  W_out, b_out, W_D``), everything that reads it by ``R^-1`` on the left (``W_Q, W_K,
  W_V`` and their tensor-family pairs, ``W_in, W_L, W_R, W_U``); read-side biases stay.
* per head, QK: ``W_Q A, W_K A^-T`` (biases alike), so ``q.k`` is unchanged. The tensor
  family has one ``A`` per factor pair, may trade a scalar between the pairs
  (``q1 c, q2 / c``) and may swap the pairs (the pattern is their product). Rotary
  rotates q and k per position, so ``A`` must commute with every rotation: per
  frequency pair ``(i, i + E/2)`` it is a scaled rotation ``[[a, b], [-b, a]]``.
* per head, OV: ``W_V B, B^-1 W_O`` (``b_V B``).
* head permutation within a layer.
* optionally a constant added to all logits (``W_U + w 1^T``, ``b_U + c``): it changes the
  logits by a per-position constant, so log-probabilities are unchanged.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Literal

import numpy as np
import torch

from craft.models.components import ComponentRecord, component_records
from craft.models.transformer import Transformer

Residual = Literal["invertible", "orthogonal", "none"]

READS = ("W_Q", "W_K", "W_V", "W_Q1", "W_K1", "W_Q2", "W_K2", "W_in", "W_L", "W_R")
WRITES = ("W_O", "b_O", "W_out", "b_out", "W_D")
HEAD_PARAMS = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "W_Q1", "W_K1", "W_Q2", "W_K2")


def _orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    # torch's LAPACK: numpy's threaded OpenBLAS crawls on a loaded 2-core machine
    q, r = torch.linalg.qr(torch.from_numpy(rng.standard_normal((n, n))))
    return (q * torch.sign(torch.diagonal(r))).numpy()


def _inv(m: np.ndarray) -> np.ndarray:
    return torch.linalg.inv(torch.from_numpy(m)).numpy()


def random_invertible(rng: np.random.Generator, n: int, spread: float = 0.5) -> np.ndarray:
    """``Q1 diag(s) Q2`` with ``log s`` uniform in ``[-spread, spread]`` (condition <= e^2s)."""
    s = np.exp(rng.uniform(-spread, spread, n))
    return (_orthogonal(rng, n) * s) @ _orthogonal(rng, n)


def rotary_commuting(rng: np.random.Generator, e: int) -> np.ndarray:
    """A random ``[E, E]`` map commuting with every rotary rotation: per pair ``(i, i+E/2)``
    a scaled rotation (complex multiplication commutes with complex multiplication)."""
    half = e // 2
    scale = np.exp(rng.uniform(-0.5, 0.5, half))
    angle = rng.uniform(-np.pi, np.pi, half)
    a, b = scale * np.cos(angle), scale * np.sin(angle)
    m = np.zeros((e, e))
    i = np.arange(half)
    m[i, i], m[i + half, i + half], m[i, i + half], m[i + half, i] = a, a, b, -b
    return m


def _residual(state: dict[str, torch.Tensor], r: np.ndarray) -> None:
    rt = torch.from_numpy(r)
    rinv = torch.from_numpy(_inv(r))
    for name, w in state.items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("W_E", "W_pos") or leaf in WRITES:
            state[name] = w @ rt
        elif leaf in READS or leaf == "W_U":
            state[name] = rinv @ w  # broadcasts over heads: [D, D] @ [H, D, E]


def _right(
    state: dict[str, torch.Tensor], prefix: str, part: str, head: int, m: np.ndarray
) -> None:
    """``W_part[head] -> W_part[head] m`` and the same on ``b_part`` when present."""
    mt = torch.from_numpy(m)
    state[prefix + "W_" + part][head] = state[prefix + "W_" + part][head] @ mt
    if prefix + "b_" + part in state:
        state[prefix + "b_" + part][head] = state[prefix + "b_" + part][head] @ mt


def _apply_heads(
    state: dict[str, torch.Tensor], model: Transformer, rng: np.random.Generator
) -> None:
    cfg = model.cfg
    e = cfg.d_head
    pairs = [("Q", "K")] if cfg.family == "standard" else [("Q1", "K1"), ("Q2", "K2")]
    for layer in range(cfg.n_layers):
        prefix = f"blocks.{layer}.attn."
        for h in range(cfg.n_heads):
            trade = rng.choice([-1.0, 1.0]) * np.exp(rng.uniform(-0.7, 0.7))
            for n, (q, k) in enumerate(pairs):
                rotary = cfg.positions == "rotary"
                a = rotary_commuting(rng, e) if rotary else random_invertible(rng, e)
                c = 1.0 if len(pairs) == 1 else (trade if n == 0 else 1 / trade)
                _right(state, prefix, q, h, a * c)
                _right(state, prefix, k, h, _inv(a).T)
            b = random_invertible(rng, e)
            _right(state, prefix, "V", h, b)
            state[prefix + "W_O"][h] = torch.from_numpy(_inv(b)) @ state[prefix + "W_O"][h]
        if cfg.family == "tensor" and rng.random() < 0.5:  # swap the factor pairs
            for a, b in (("W_Q1", "W_Q2"), ("W_K1", "W_K2")):
                state[prefix + a], state[prefix + b] = state[prefix + b], state[prefix + a]


def _permute(
    state: dict[str, torch.Tensor], model: Transformer, rng: np.random.Generator
) -> list[list[int]]:
    perms = []
    for layer in range(model.cfg.n_layers):
        perm = rng.permutation(model.cfg.n_heads)
        perms.append([int(p) for p in perm])
        for leaf in HEAD_PARAMS:
            name = f"blocks.{layer}.attn.{leaf}"
            if name in state:
                state[name] = state[name][torch.from_numpy(perm)]
    return perms


def _moved(
    records: tuple[ComponentRecord, ...], perms: list[list[int]]
) -> tuple[ComponentRecord, ...]:
    """Records whose head indices follow ``perms`` (``perms[layer][new]`` is the old index)."""
    back = [{old: new for new, old in enumerate(p)} for p in perms]
    return tuple(r if r.head is None else replace(r, head=back[r.layer][r.head]) for r in records)


def apply_gauge(
    model: Transformer,
    rng: np.random.Generator,
    *,
    residual: Residual = "invertible",
    heads: bool = True,
    permute: bool = True,
    logit_shift: bool = False,
) -> Transformer:
    """A new model computing the same function (logits, or log-probs with ``logit_shift``).

    The copy's ``meta["gauge"]["head_perm"][layer][i]`` is the original index of its head
    ``i``, and its component records' head indices follow the permutation. The residual
    layout is dropped (a change of basis mixes the named directions).
    """
    dtype = next(model.parameters()).dtype
    state = {k: v.detach().cpu().double().clone() for k, v in model.state_dict().items()}
    d = model.cfg.d_model
    if residual != "none":
        r = _orthogonal(rng, d) if residual == "orthogonal" else random_invertible(rng, d)
        _residual(state, r)
    if heads:
        _apply_heads(state, model, rng)
    perms = _permute(state, model, rng) if permute else None
    if logit_shift:
        state["unembed.W_U"] = state["unembed.W_U"] + torch.from_numpy(rng.standard_normal((d, 1)))
        if "unembed.b_U" in state:
            state["unembed.b_U"] = state["unembed.b_U"] + float(rng.standard_normal())
    out = Transformer(model.cfg).to(torch.float64)
    out.load_state_dict(state, strict=True)
    out = out.to(dtype).eval()
    out.meta = copy.deepcopy(model.meta)
    if perms is not None and out.meta.get("components"):
        out.meta["components"] = [r.to_json() for r in _moved(component_records(model), perms)]
    out.meta["gauge"] = {"residual": residual, "heads": heads, "head_perm": perms}
    return out
