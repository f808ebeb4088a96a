"""Behaviour: how far a model's next-token distributions are from a spec's ground truth.

At every position ``t`` of a sequence (BOS at column 0) the spec gives the exact
distribution ``p`` of the next token (:func:`specs.truth.truth`) and the rule that
fired; the model gives log-probabilities ``log q`` (``log_softmax`` of its logits, in
float64). Per position:

* cross-entropy against the true distribution ``CE = -sum_v p_v log q_v``;
* entropy ``H = -sum_v p_v log p_v`` (the loss of a perfect model);
* excess loss ``KL(p || q) = CE - H``, computed as ``sum_{p_v > 0} p_v (log p_v - log q_v)``
  so that no ``0 * -inf`` and no cancellation of two large numbers enters;
* argmax accuracy: the model's argmax is one of the maximisers of ``p`` (ties in ``p``
  all count as correct).

:func:`evaluate` aggregates these per rule (the rule that fired, ``"start"`` at
position 0) and overall, on sequences sampled from the spec or given by the caller.

Shape glossary: ``B`` sequences, ``T`` columns (BOS at column 0, so ``T = 1 + length``),
``V`` the spec's vocabulary size (BOS excluded; the model's ``n_out``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from craft.compiler import analyse
from craft.compiler.conditions import condition_mask, stated
from craft.models import Transformer
from specs.errors import CraftError
from specs.model import Spec
from specs.sample import sample
from specs.truth import check_tokens, encode, truth

_TIE_TOL = 1e-12  # p values of tied maximisers come from equal fractions; allow rounding


@dataclass(frozen=True)
class RuleStats:
    """Aggregates over the positions where one rule fired (or over all positions).

    Attributes:
        kl: mean excess loss ``KL(p || q)`` in nats.
        ce: mean cross-entropy ``-sum p log q`` in nats.
        entropy: mean entropy of the true distribution in nats.
        accuracy: fraction of positions whose model argmax is a true maximiser.
        n: number of positions.
        max_kl: largest per-position KL.
    """

    kl: float
    ce: float
    entropy: float
    accuracy: float
    n: int
    max_kl: float

    def to_json(self) -> dict[str, float | int]:
        return {
            "kl": self.kl,
            "ce": self.ce,
            "entropy": self.entropy,
            "accuracy": self.accuracy,
            "n": self.n,
            "max_kl": self.max_kl,
        }


@dataclass(frozen=True)
class Evaluation:
    """Per-rule and overall behaviour of a model on a spec.

    Attributes:
        rules: stats per rule name, in ``spec.rule_names()`` order; rules that never
            fired on the evaluated positions are omitted.
        overall: stats over every position.
        where_exact: for a compiled tensor model with stated conditions, the same stats
            over the positions where the conditions hold (where its bound is claimed).
    """

    rules: dict[str, RuleStats]
    overall: RuleStats
    where_exact: Evaluation | None = None
    non_finite: int = 0  # positions whose logits hold a NaN or an inf (a diverged model)

    def to_json(self) -> dict:
        """``{"rules": {name: stats}, "overall": stats}`` with stats as in :class:`RuleStats`
        (plus ``"where_exact"`` of the same shape when present)."""
        out = {
            "rules": {name: s.to_json() for name, s in self.rules.items()},
            "overall": self.overall.to_json(),
        }
        if self.where_exact is not None:
            out["where_exact"] = self.where_exact.to_json()
        if self.non_finite:
            out["non_finite"] = self.non_finite
        return out


@dataclass(frozen=True)
class PositionMetrics:
    """Per-position metrics, each ``[B, T]`` (float64, ``correct`` and ``finite`` bool,
    ``rule_ids`` int64). ``finite``: the model's logits there hold no NaN or inf (where
    they do, KL and CE are NaN and ``correct`` is False)."""

    kl: np.ndarray
    ce: np.ndarray
    entropy: np.ndarray
    correct: np.ndarray
    rule_ids: np.ndarray
    finite: np.ndarray | None = None  # None: all finite


def check_fit(model: Transformer, spec: Spec, *, where: str = "evaluate") -> None:
    """Raise CraftError unless ``model`` reads the spec's tokens and BOS and predicts
    exactly the spec's vocabulary (``where``: the model file, or the calling function)."""
    cfg, vocab_size = model.cfg, len(spec.vocab)
    fix = "use the spec the model was compiled or trained for"
    if cfg.n_out != vocab_size:
        raise CraftError(
            f"the model predicts {cfg.n_out} tokens but spec {spec.name!r} has {vocab_size}",
            where=where,
            fix=fix,
        )
    if cfg.n_vocab <= vocab_size:
        raise CraftError(
            f"the model reads {cfg.n_vocab} input ids, but the BOS id of spec "
            f"{spec.name!r} is {vocab_size}",
            where=where,
            fix=fix,
        )


def non_finite_weight(model: Transformer) -> str | None:
    """The name of the first parameter holding a NaN or an inf (None: all finite)."""
    for name, value in model.named_parameters():
        if not torch.isfinite(value).all():
            return name
    return None


def check_finite(model: Transformer, *, where: str) -> None:
    """Raise CraftError when a weight of ``model`` is NaN or inf (a diverged run)."""
    name = non_finite_weight(model)
    if name is not None:
        raise CraftError(
            f"the model's weights are not finite ({name} holds a NaN or an inf): it diverged "
            "or the file is corrupt",
            where=where,
            fix="use a model from before the divergence (an earlier checkpoint), or retrain "
            "with a lower --lr",
        )


def _check_model(model: Transformer, spec: Spec, columns: int) -> None:
    check_fit(model, spec)
    cfg = model.cfg
    if columns > cfg.n_ctx:
        raise CraftError(
            f"sequences of {columns - 1} tokens need {columns} positions; the model has "
            f"n_ctx={cfg.n_ctx}",
            where="evaluate",
            fix=f"use a length of at most {cfg.n_ctx - 1}",
        )


def _metrics(log_q: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(kl, ce, entropy, correct, finite) [B, T] from log q and p, both float64 [B, T, V]."""
    support = p > 0
    log_p = torch.where(support, p, torch.ones_like(p)).log()
    zero = torch.zeros_like(p)
    # KL >= 0; a model within rounding of p can give -1e-17, which is clamped to 0.
    kl = torch.where(support, p * (log_p - log_q), zero).sum(-1).clamp_min(0.0)
    ce = -torch.where(support, p * log_q, zero).sum(-1)
    entropy = -torch.where(support, p * log_p, zero).sum(-1)
    p_at_argmax = p.gather(-1, log_q.argmax(-1, keepdim=True)).squeeze(-1)
    finite = torch.isfinite(log_q).all(-1)  # NaN or inf logits give NaN or -inf here
    correct = (p_at_argmax >= p.amax(-1) - _TIE_TOL) & finite
    return kl, ce, entropy, correct, finite


def position_metrics(
    model: Transformer,
    spec: Spec,
    tokens: np.ndarray | torch.Tensor,
    *,
    batch: int = 100,
    dtype: torch.dtype = torch.float64,
) -> PositionMetrics:
    """KL, CE, entropy and argmax correctness at every position of ``tokens``.

    Args:
        model: a model whose outputs are the spec's vocabulary; it is not modified (a
            copy is cast to ``dtype`` and run under ``torch.no_grad()``).
        spec: the spec giving the ground truth.
        tokens: int [B, T], the spec's BOS id in column 0.
        batch: sequences per forward pass.
        dtype: dtype the copy of the model runs in.

    Returns:
        The per-position metrics, each [B, T].

    Raises:
        CraftError: invalid tokens, or a model that does not fit the spec.
    """
    arr = tokens.detach().cpu().numpy() if isinstance(tokens, torch.Tensor) else tokens
    arr = check_tokens(spec, arr)
    _check_model(model, spec, arr.shape[1])
    if batch < 1:
        raise CraftError(f"batch is {batch}", where="evaluate", fix="pass batch >= 1")
    runner = copy.deepcopy(model).to(dtype).eval()
    device = next(runner.parameters()).device
    parts: list[tuple[np.ndarray, ...]] = []
    with torch.no_grad():
        for lo in range(0, arr.shape[0], batch):
            chunk = arr[lo : lo + batch]
            probs, rule_ids = truth(spec, chunk)  # [b, T, V], [b, T]
            logits = runner(torch.from_numpy(chunk).to(device))  # [b, T, V]
            log_q = torch.log_softmax(logits.to(torch.float64), dim=-1).cpu()
            kl, ce, entropy, correct, finite = _metrics(log_q, torch.from_numpy(probs))
            parts.append((kl, ce, entropy, correct, rule_ids, finite))
    if not parts:
        empty = np.empty((0, arr.shape[1]))
        return PositionMetrics(empty, empty, empty, empty.astype(bool), empty.astype(np.int64))
    kl, ce, entropy, correct, rule_ids, finite = (
        np.concatenate([np.asarray(x) for x in cols]) for cols in zip(*parts, strict=True)
    )
    return PositionMetrics(kl, ce, entropy, correct, rule_ids, None if finite.all() else finite)


def kl_per_position(
    model: Transformer, spec: Spec, tokens: np.ndarray | torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """``KL(p || q)`` at every position: (kl float64 [B, T], rule_ids int64 [B, T])."""
    metrics = position_metrics(model, spec, tokens)
    return metrics.kl, metrics.rule_ids


def _stats(m: PositionMetrics, mask: np.ndarray) -> RuleStats:
    n = int(mask.sum())
    return RuleStats(
        kl=float(m.kl[mask].mean()),
        ce=float(m.ce[mask].mean()),
        entropy=float(m.entropy[mask].mean()),
        accuracy=float(m.correct[mask].mean()),
        n=n,
        max_kl=float(m.kl[mask].max()),
    )


def aggregate(spec: Spec, metrics: PositionMetrics, where: np.ndarray | None = None) -> Evaluation:
    """Per-rule and overall means of per-position metrics (rules with no position omitted).

    Args:
        where: optional bool [B, T]: only these positions count.

    Raises:
        CraftError: no positions at all.
    """
    keep = np.ones_like(metrics.kl, dtype=bool) if where is None else where
    if not keep.any():
        raise CraftError("no positions to evaluate", where="evaluate", fix="pass n_seqs >= 1")
    rules = {}
    for rule_id, name in enumerate(spec.rule_names()):
        mask = (metrics.rule_ids == rule_id) & keep
        if mask.any():
            rules[name] = _stats(metrics, mask)
    bad = 0 if metrics.finite is None else int((keep & ~metrics.finite).sum())
    return Evaluation(rules, _stats(metrics, keep), non_finite=bad)


def exact_region(model: Transformer, spec: Spec, tokens: np.ndarray) -> np.ndarray | None:
    """bool [B, T]: positions where a compiled model's stated conditions hold.

    None for models with no conditions (most compiled models, trained models): their
    bound, if any, is claimed everywhere.
    """
    compiler = model.meta.get("compiler") or {}
    if not compiler.get("family") or not model.meta.get("conditions"):
        return None
    an = analyse(spec)
    return condition_mask(stated(an, model.meta), an, tokens)


def evaluate(
    model: Transformer,
    spec: Spec,
    tokens: np.ndarray | torch.Tensor | None = None,
    *,
    n_seqs: int = 2000,
    length: int | None = None,
    seed: int = 0,
    batch: int = 100,
    dtype: torch.dtype = torch.float64,
) -> Evaluation:
    """Evaluate a model against a spec's ground truth, per rule and overall.

    Args:
        model: the model (not modified).
        spec: the spec.
        tokens: int [B, T] with BOS in column 0; when None, ``n_seqs`` sequences of
            ``length`` tokens are sampled from the spec with ``seed``.
        n_seqs: sequences to sample (ignored when ``tokens`` is given).
        length: tokens per sampled sequence (default ``spec.max_len``).
        seed: sampling seed.
        batch: sequences per forward pass.
        dtype: dtype the model runs in (float64 by default, so the evaluation measures
            the weights, not float32 rounding).

    Returns:
        The :class:`Evaluation`; every position ``0..T-1`` counts, including the last
        (the prediction after the final token).

    Raises:
        CraftError: bad arguments or tokens, or a model that does not fit the spec.

    Example:
        >>> ev = evaluate(compile_spec(spec).model, spec, n_seqs=100)  # doctest: +SKIP
        >>> ev.overall.kl < 1e-3  # doctest: +SKIP
        True
    """
    if tokens is None:
        if isinstance(n_seqs, bool) or not isinstance(n_seqs, int) or n_seqs < 1:
            raise CraftError(f"n_seqs is {n_seqs!r}", where="evaluate", fix="pass n_seqs >= 1")
        length = spec.max_len if length is None else length
        tokens, _ = sample(spec, n_seqs, length, seed)
    metrics = position_metrics(model, spec, tokens, batch=batch, dtype=dtype)
    region = exact_region(model, spec, np.asarray(tokens))
    result = aggregate(spec, metrics)
    if region is not None and region.any():
        result = replace(result, where_exact=aggregate(spec, metrics, region))
    return result


@dataclass(frozen=True)
class ContextReport:
    """The spec's and the model's next-token distributions at one context."""

    context: tuple[str, ...]
    rule: str
    kl: float
    spec: dict[str, float]  # token -> probability, support only
    model: dict[str, float]  # token -> probability, every token
    claimed: bool = True  # inside the compiled model's stated conditions (or it has none)

    def to_json(self) -> dict:
        return {
            "context": list(self.context),
            "rule": self.rule,
            "kl": self.kl,
            "spec": self.spec,
            "model": self.model,
            "bound_claimed": self.claimed,
        }


def at_context(model: Transformer, spec: Spec, names: Sequence[str]) -> ContextReport:
    """Compare ``model`` with the ground truth after the context ``names`` (token names).

    Raises:
        CraftError: an unknown token, a context too long, or a model that does not fit.
    """
    ids = encode(spec, names)
    tokens = np.array([[len(spec.vocab), *ids]], dtype=np.int64)
    m = position_metrics(model, spec, tokens)
    p, rule_ids = truth(spec, tokens)
    runner = copy.deepcopy(model).to(torch.float64).eval()
    with torch.no_grad():
        q = torch.softmax(runner(torch.from_numpy(tokens))[0, -1], -1).numpy()
    vocab = spec.vocab.tokens
    region = exact_region(model, spec, tokens)
    return ContextReport(
        context=tuple(names),
        rule=spec.rule_names()[int(rule_ids[0, -1])],
        kl=float(m.kl[0, -1]),
        spec={vocab[i]: float(x) for i, x in enumerate(p[0, -1]) if x > 0},
        model={vocab[i]: float(x) for i, x in enumerate(q)},
        claimed=region is None or bool(region[0, -1]),
    )
