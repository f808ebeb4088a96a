"""Random initialisation and the tensor family's Q/K norm control.

:class:`~craft.models.Transformer` starts at zero; :func:`init_weights` draws every
parameter from one seeded generator, so the same seed gives the same weights:

* embeddings ``W_E``, ``W_pos``: N(0, 1), so the residual norm is about sqrt(d_model);
* projections (``W_Q``, ``W_K``, ``W_V``, ``W_O``, MLP weights): N(0, 1/fan_in);
* tensor family ``W_Q1, W_K1, W_Q2, W_K2``: N(0, qk_init^2/d_model). The pattern is of
  degree 4 in these, so their scale sets both the size of the pattern at init (about
  1/d_head) and how fast its gradients grow; :func:`clamp_qk` and :func:`qk_penalty`
  keep it bounded during training (unnormalised bilinear attention can blow up or
  stall, and then it fails to learn induction);
* unembedding ``W_U``: N(0, 1/d_model^2), small so the first predictions are near uniform;
* biases: zero.
"""

from __future__ import annotations

import math

import torch
from torch import nn

QK_NAMES = ("W_Q1", "W_K1", "W_Q2", "W_K2")


def init_weights(model: nn.Module, seed: int, qk_init: float = 1.0) -> None:
    """Initialise every parameter of a Transformer in place, deterministically.

    Args:
        model: a :class:`~craft.models.Transformer` (either family).
        seed: the generator seed; parameters are drawn in ``named_parameters`` order.
        qk_init: tensor family: scale of W_Q1, W_K1, W_Q2, W_K2 relative to 1/sqrt(d_model).
    """
    gen = torch.Generator().manual_seed(seed)
    d_model = model.cfg.d_model
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith("b_"):
                std = 0.0
            elif leaf in ("W_E", "W_pos"):
                std = 1.0
            elif leaf == "W_U":
                std = 1.0 / d_model
            elif leaf in QK_NAMES:
                std = qk_init / math.sqrt(d_model)
            else:  # [H, D, E] and [D, M] read D; [H, E, D] and [M, D] read E or M
                fan_in = p.shape[-2]
                std = 1.0 / math.sqrt(fan_in)
            draw = torch.randn(p.shape, generator=gen, dtype=torch.float32) * std
            p.copy_(draw.to(p.dtype))


def qk_params(model: nn.Module) -> list[torch.Tensor]:
    """The tensor family's bilinear Q/K weights ``[H, D, E]`` (empty for standard models)."""
    return [p for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] in QK_NAMES]


@torch.no_grad()
def clamp_qk(model: nn.Module, max_norm: float) -> None:
    """Rescale each head's W_Q1/W_K1/W_Q2/W_K2 ``[D, E]`` to Frobenius norm <= max_norm."""
    for p in qk_params(model):
        norms = p.flatten(1).norm(dim=1).clamp_min(1e-12)  # [H]
        p.mul_((max_norm / norms).clamp(max=1.0)[:, None, None])


def qk_penalty(model: nn.Module) -> torch.Tensor:
    """``sum ||W||_F^2`` over the bilinear Q/K weights (0 for standard models)."""
    params = qk_params(model)
    if not params:
        return torch.zeros(())
    return sum(p.square().sum() for p in params)
