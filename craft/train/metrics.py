"""Per-rule excess loss of a model against a spec's exact ground truth.

Excess loss at a position is ``KL(p_true || q_model) = CE - H(p_true)``; a rule's figure
is the mean over the positions where that rule fires. This is deliberately small and
self-contained (``craft`` may not import ``verify``); ``verify.behaviour`` computes the
same numbers with more statistics.

Shape glossary: B sequences, T positions (BOS at column 0), V spec vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from specs.model import Spec
from specs.sample import sample
from specs.truth import truth


@dataclass(frozen=True)
class EvalSet:
    """A fixed held-out batch with its ground truth.

    Attributes:
        tokens: int64 [B, T] model inputs (BOS, then T - 1 tokens).
        log_p: float32 [B, T, V] log of the true next-token probabilities (-inf where 0).
        p: float32 [B, T, V] the true probabilities.
        rule_ids: int64 [B, T] the rule firing at each position.
        names: rule names, indexed by rule id.
    """

    tokens: torch.Tensor
    p: torch.Tensor
    log_p: torch.Tensor
    rule_ids: torch.Tensor
    names: tuple[str, ...]

    def to(self, device: torch.device | str) -> EvalSet:
        return EvalSet(
            self.tokens.to(device),
            self.p.to(device),
            self.log_p.to(device),
            self.rule_ids.to(device),
            self.names,
        )


def make_eval_set(spec: Spec, n_seqs: int, length: int, seed: int) -> EvalSet:
    """Sample ``n_seqs`` sequences and compute the truth at the ``length`` input positions."""
    tokens, _ = sample(spec, n_seqs, length, seed)
    inputs = tokens[:, :length]  # position t predicts tokens[:, t + 1]
    probs, rule_ids = truth(spec, inputs)
    p = torch.from_numpy(probs).float()
    return EvalSet(
        torch.from_numpy(inputs), p, p.log(), torch.from_numpy(rule_ids), spec.rule_names()
    )


@torch.no_grad()
def excess_by_rule(model: nn.Module, data: EvalSet, chunk: int = 256) -> dict[str, float]:
    """Mean KL(p_true || q_model) per rule over the eval set (rules that never fire omitted).

    Also returns ``"overall"``: the mean over every position.
    """
    n_rules = len(data.names)
    total = torch.zeros(n_rules, dtype=torch.float64, device=data.tokens.device)
    count = torch.zeros(n_rules, dtype=torch.float64, device=data.tokens.device)
    was_training = model.training
    model.eval()
    for lo in range(0, len(data.tokens), chunk):
        sl = slice(lo, lo + chunk)
        log_q = model(data.tokens[sl]).float().log_softmax(-1)  # [b, T, V]
        p = data.p[sl]
        kl = torch.where(p > 0, p * (data.log_p[sl] - log_q), torch.zeros_like(p)).sum(-1)
        ids = data.rule_ids[sl].flatten()
        total.index_add_(0, ids, kl.flatten().double())
        count.index_add_(0, ids, torch.ones_like(ids, dtype=torch.float64))
    model.train(was_training)
    out = {name: float(total[i] / count[i]) for i, name in enumerate(data.names) if count[i] > 0}
    out["overall"] = float(total.sum() / count.sum())
    return out


def pooled(excess: dict[str, float], counts: dict[str, int], names: list[str]) -> float:
    """Position-weighted mean excess loss over a group of rules (e.g. all skip-bigrams)."""
    present = [n for n in names if n in excess and counts.get(n, 0) > 0]
    if not present:
        return float("nan")
    weight = np.array([counts[n] for n in present], dtype=float)
    return float(np.dot(weight, [excess[n] for n in present]) / weight.sum())


def rule_counts(data: EvalSet) -> dict[str, int]:
    """How many eval positions each rule fires at."""
    counts = torch.bincount(data.rule_ids.flatten().cpu(), minlength=len(data.names))
    return {name: int(c) for name, c in zip(data.names, counts, strict=True) if c > 0}
