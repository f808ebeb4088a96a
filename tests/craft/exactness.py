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


def check_bounds(spec, compiled, tokens: np.ndarray, mean_bar: float | None, model=None):
    """Per rule, where the compiled model's stated conditions hold: max KL <= its bound
    (and mean KL <= ``mean_bar``). ``model`` (default: the compiled one) is what runs.
    Returns the rules checked and how many positions the conditions left out."""
    from craft.compiler.conditions import condition_mask

    kl, rules = positions_kl(spec, compiled.model if model is None else model, tokens)
    ok = condition_mask(compiled.conditions, compiled.analysis, tokens)
    names = spec.rule_names()
    seen = []
    for rid in np.unique(rules):
        mask = (rules == rid) & ok
        if not mask.any():
            continue
        bound = compiled.constants.bound[names[rid]]
        assert kl[mask].max() <= bound, (names[rid], kl[mask].max(), bound)
        if mean_bar is not None:
            assert kl[mask].mean() <= mean_bar, (names[rid], kl[mask].mean())
        seen.append(names[rid])
    return seen, int((~ok).sum())
