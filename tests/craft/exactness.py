"""Shared measurement for the compiler tests: KL(spec || model) per position."""

from __future__ import annotations

import numpy as np
import torch

import specs
from verify import batched


def model_logprobs(model, tokens: np.ndarray, batch: int = 250) -> np.ndarray:
    """Log-probabilities ``[B, T, V]``: the model runs in its own dtype (float32 as saved,
    which the bounds allow for), the softmax in float64."""
    out = []
    with torch.no_grad():
        for i in range(0, len(tokens), batch):
            logits = model(torch.from_numpy(tokens[i : i + batch]).long())
            out.append(torch.log_softmax(logits.double(), -1).numpy())
    return np.concatenate(out)


def positions_kl(spec, model, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KL at every position of ``tokens [B, T]`` and the rule that fired there."""
    p, rules = specs.truth(spec, tokens)
    return batched.kl(p, model_logprobs(model, tokens)), rules


def last_kl(spec, model, contexts: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """KL at the last position of each context (verify.batched pads after it)."""
    p, rules = batched.truth_at(spec, contexts)
    return batched.kl(p, batched.model_logprobs(model, spec, contexts)), rules
