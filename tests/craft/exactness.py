"""Shared measurement for the compiler tests: KL(spec || model) per position."""

from __future__ import annotations

import numpy as np
import torch

import specs


def model_logprobs(model, tokens: np.ndarray, batch: int = 250) -> np.ndarray:
    """Log-probabilities ``[B, T, V]``: the model runs in its own dtype (float32 as saved,
    which the bounds allow for), the softmax in float64."""
    out = []
    with torch.no_grad():
        for i in range(0, len(tokens), batch):
            logits = model(torch.from_numpy(tokens[i : i + batch]).long())
            out.append(torch.log_softmax(logits.double(), -1).numpy())
    return np.concatenate(out)


def kl_rows(p: np.ndarray, logq: np.ndarray) -> np.ndarray:
    """KL(p || q) along the last axis, 0 log 0 = 0."""
    safe = np.where(p > 0, p, 1.0)
    return np.where(p > 0, p * (np.log(safe) - logq), 0.0).sum(-1)


def positions_kl(spec, model, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KL at every position of ``tokens [B, T]`` and the rule that fired there."""
    p, rules = specs.truth(spec, tokens)
    return kl_rows(p, model_logprobs(model, tokens)), rules


def last_kl(spec, model, contexts: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """KL at the last position of each context (padded after it: the models are causal)."""
    v = len(spec.vocab)
    width = 1 + max(len(c) for c in contexts)
    tokens = np.zeros((len(contexts), width), dtype=np.int64)
    tokens[:, 0] = v
    for i, c in enumerate(contexts):
        tokens[i, 1 : 1 + len(c)] = c
    logq = model_logprobs(model, tokens)
    idx = np.array([len(c) for c in contexts])
    truths = [specs.next_dist(spec, c) for c in contexts]
    p = np.stack([d for d, _ in truths])
    rules = np.array([r for _, r in truths])
    return kl_rows(p, logq[np.arange(len(contexts)), idx]), rules
