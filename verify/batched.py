"""Batched evaluation of single contexts: the workhorse of property checks.

Contexts are token-id lists after BOS, of any lengths. The models are causal, so a
batch is padded *after* each context and read at the context's last position.

Shape glossary: N contexts, W = 1 + longest context, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from craft.models import Transformer, hooks
from specs.model import Spec
from specs.truth import next_dist


def pad(spec: Spec, contexts: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(tokens int64 [N, W] with BOS at column 0, last-position index [N])."""
    width = 1 + max((len(c) for c in contexts), default=0)
    tokens = np.zeros((len(contexts), width), dtype=np.int64)
    tokens[:, 0] = len(spec.vocab)
    for i, c in enumerate(contexts):
        tokens[i, 1 : 1 + len(c)] = c
    return tokens, np.array([len(c) for c in contexts], dtype=np.int64)


def model_logprobs(
    model: Transformer,
    spec: Spec,
    contexts: Sequence[Sequence[int]],
    patch: dict[str, Callable] | None = None,
) -> np.ndarray:
    """float64 log-probabilities of the next token after each context ``[N, V]``.

    ``patch`` maps hook-point names to forward hooks applied during the pass (ablation).
    """
    tokens, last = pad(spec, contexts)
    with torch.no_grad(), hooks(model, patch or {}):
        logits = model(torch.from_numpy(tokens))
    at_last = logits[torch.arange(len(contexts)), torch.from_numpy(last)]
    return torch.log_softmax(at_last.double(), -1).numpy()


def truth_at(spec: Spec, contexts: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Exact next-token distributions ``[N, V]`` and the rule ids ``[N]`` that fired."""
    pairs = [next_dist(spec, list(c)) for c in contexts]
    return np.stack([p for p, _ in pairs]), np.array([r for _, r in pairs], dtype=np.int64)


def kl(p: np.ndarray, logq: np.ndarray) -> np.ndarray:
    """KL(p || q) along the last axis (0 log 0 = 0), clamped at 0 against rounding."""
    safe = np.where(p > 0, p, 1.0)
    return np.maximum(np.where(p > 0, p * (np.log(safe) - logq), 0.0).sum(-1), 0.0)


def kl_between(logp: np.ndarray, logq: np.ndarray) -> np.ndarray:
    """KL(P || Q) for two models' log-probabilities."""
    return np.maximum((np.exp(logp) * (logp - logq)).sum(-1), 0.0)


def zero_head(layer: int, head: int) -> dict[str, Callable]:
    """A patch removing one head's write to the residual stream."""

    def fn(_module, _inputs, out):
        out = out.clone()
        out[:, :, head] = 0
        return out

    return {f"blocks.{layer}.attn.hook_result": fn}


def head_mean(model: Transformer, tokens: np.ndarray, layer: int, head: int) -> torch.Tensor:
    """One head's write to the residual at each position, averaged over the padded
    sequences ``tokens`` ``[N, W]`` (BOS in column 0): ``[W, D]``."""
    total = None
    for i in range(0, len(tokens), 64):  # bounded memory: [64, W, H, D] at a time
        part = head_outputs(model, tokens[i : i + 64], layer)[:, :, head].double().sum(0)
        total = part if total is None else total + part
    return total / max(len(tokens), 1)


def mean_head(layer: int, head: int, mean: torch.Tensor) -> dict[str, Callable]:
    """A patch replacing one head's write at each position by ``mean`` ``[W, D]`` (from
    :func:`head_mean`); contexts may be shorter than ``W``, not longer."""

    def fn(_module, _inputs, out):
        """Write the mean into the head's slot."""
        out = out.clone()
        out[:, :, head] = mean[: out.shape[1]].to(out.dtype)
        return out

    return {f"blocks.{layer}.attn.hook_result": fn}


def attention(model: Transformer, spec: Spec, contexts, layer: int, head: int) -> np.ndarray:
    """The head's attention row at each context's last position ``[N, W]``."""
    tokens, last = pad(spec, contexts)
    seen: dict[str, torch.Tensor] = {}

    def save(_m, _i, out):
        seen["p"] = out.detach()

    with torch.no_grad(), hooks(model, {f"blocks.{layer}.attn.hook_pattern": save}):
        model(torch.from_numpy(tokens))
    pattern = seen["p"][:, head].double().numpy()  # [N, T, S]
    return pattern[np.arange(len(contexts)), last]


def head_outputs(model: Transformer, tokens: np.ndarray, layer: int) -> torch.Tensor:
    """Every head's write to the residual, ``[N, W, H, D]``, for padded ``tokens``."""
    seen: dict[str, torch.Tensor] = {}

    def save(_m, _i, out):
        seen["r"] = out.detach()

    with torch.no_grad(), hooks(model, {f"blocks.{layer}.attn.hook_result": save}):
        model(torch.from_numpy(tokens))
    return seen["r"]


def patched_logprobs(
    model: Transformer,
    spec: Spec,
    target: Sequence[Sequence[int]],
    source: Sequence[Sequence[int]],
    layer: int,
    head: int,
) -> np.ndarray:
    """Run ``target`` contexts with one head's output taken from ``source`` contexts (same
    lengths, pairwise); log-probabilities after each target context ``[N, V]``."""
    src, _ = pad(spec, source)
    donor = head_outputs(model, src, layer)

    def swap(_m, _i, out):
        out = out.clone()
        out[:, :, head] = donor[:, :, head]
        return out

    return model_logprobs(model, spec, target, {f"blocks.{layer}.attn.hook_result": swap})
