"""Where a model without positional embeddings keeps position, and how it got there.

A causal model with no position table can still know ``t``: a head that attends
uniformly over the prefix gives BOS the share ``1/(t+1)`` (the crafted construction,
:mod:`craft.compiler.positions`), and later layers can read position from that. This
module measures, on random token sequences after BOS (the BOS position itself is left
out: its own token already tells it apart):

* per layer, how well a linear probe reads position (``t``, ``log(t+1)`` or
  ``1/(t+1)``, the best) from the residual stream after that layer (held-out R^2; the
  embedding is layer ``-1``): the first layer where it is
  high is where position is derived;
* per head, the R^2 of the same probe on the head's own write (``hook_result``), its
  *uniformity* (one minus the mean total-variation distance of its pattern row from
  uniform over ``s <= t``) and its previous-token score (mean attention ``t -> t-1``).

:func:`compare` says whether two models derive position the same way: in the same
first layer, with a head of the same kind (uniform or not), and use it through
previous-token heads in the same layers.

Shape glossary: B sequences, T positions, H heads, D d_model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from craft.models.hooks import run_with_cache
from craft.models.transformer import Transformer
from verify.head_scores import Probe, patterns

CARRIES = 0.9  # probe R^2 at which a write or a layer "carries" position
UNIFORM = 0.8  # uniformity at which a head counts as a uniform (averaging) head
PREVIOUS = 0.5  # previous-token score at which a head counts as a previous-token head


@dataclass(frozen=True)
class PositionHead:
    """One head: where it is, how uniform it attends, how much position its write holds."""

    layer: int
    head: int
    carries: float  # held-out R^2 of t from the head's write
    uniform: float  # 1 - mean TV distance of its pattern from uniform over s <= t
    previous: float  # mean attention from t to t-1


@dataclass(frozen=True)
class PositionReport:
    """Per-layer probe R^2 (index 0 = embedding) and per-head figures."""

    layers: tuple[float, ...]
    heads: tuple[PositionHead, ...]

    @property
    def derived_in(self) -> int | None:
        """First layer whose output carries position (-1: the embedding already does)."""
        for i, r2 in enumerate(self.layers):
            if r2 >= CARRIES:
                return i - 1
        return None

    def carriers(self) -> tuple[PositionHead, ...]:
        return tuple(h for h in self.heads if h.carries >= CARRIES)

    def previous_heads(self) -> tuple[PositionHead, ...]:
        return tuple(h for h in self.heads if h.previous >= PREVIOUS)

    def first_carriers(self) -> tuple[PositionHead, ...]:
        """Carrying heads of the layer where position is derived."""
        return tuple(h for h in self.carriers() if h.layer == self.derived_in)

    def describe(self) -> str:
        if self.derived_in is None:
            return f"no layer carries position (probe R^2 < {CARRIES:.2f} everywhere)"
        heads = ", ".join(_head(h) for h in self.first_carriers())
        if not heads:
            layer = [h for h in self.heads if h.layer == max(self.derived_in, 0)]
            best = max(layer, key=lambda h: h.carries, default=None)
            heads = "no single head" + (f" (best {_head(best)})" if best else "")
        prev = ", ".join(f"L{h.layer}H{h.head}" for h in self.previous_heads()) or "none"
        return (
            f"position derived in layer {self.derived_in} (probe R^2 "
            f"{self.layers[self.derived_in + 1]:.3f}); carried by {heads}; "
            f"previous-token heads: {prev}"
        )


def _head(h: PositionHead) -> str:
    kind = "uniform" if h.uniform >= UNIFORM else f"uniformity {h.uniform:.2f}"
    return f"L{h.layer}H{h.head} ({kind}, R^2 {h.carries:.3f})"


def _r2(x: np.ndarray, t: np.ndarray) -> float:
    """Held-out R^2 of a ridge-regularised linear probe from ``x`` to position, best of
    three codes of it: ``t``, ``log(t+1)`` and ``1/(t+1)`` (the uniform head's share is
    the last; a linear probe of ``t`` alone would miss it). Rows are sequence-major: the
    first half of the sequences fit, the second half test (every position in both)."""
    x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    fit, test = slice(0, len(x) // 2), slice(len(x) // 2, None)
    gram = x[fit].T @ x[fit] + 1e-6 * np.eye(x.shape[1])
    best = -np.inf
    for y in (t, np.log1p(t), 1 / (t + 1)):
        w = np.linalg.solve(gram, x[fit].T @ y[fit])
        resid = y[test] - x[test] @ w
        best = max(best, 1 - resid.var() / max(y[test].var(), 1e-12))
    return float(best)


def _tokens(model: Transformer, n_seqs: int, seed: int) -> np.ndarray:
    """``n_seqs`` (even) random full-length sequences after BOS when the model has one."""
    probe = Probe.of(model)
    rng = np.random.default_rng(seed)
    pre = probe.prefix(n_seqs)
    body = rng.choice(np.asarray(probe.tokens), size=(n_seqs, model.cfg.n_ctx - pre.shape[1]))
    return np.concatenate([pre, body], axis=1)


def _uniformity(pat: np.ndarray) -> np.ndarray:
    """``[L, H]``: 1 - mean over rows of the TV distance from uniform over ``s <= t``."""
    t = pat.shape[-1]
    uniform = np.tril(np.ones((t, t))) / np.arange(1, t + 1)[:, None]
    tv = 0.5 * np.abs(pat - uniform).sum(-1)  # [L, B, H, T]
    return 1 - tv[..., 1:].mean(axis=(1, 3))


@torch.no_grad()
def position_report(
    model: Transformer, n_seqs: int = 24, seed: int = 0, queries: frozenset[int] | None = None
) -> PositionReport:
    """Probe R^2 per layer and per head on ``n_seqs`` random full-length sequences.

    ``queries``: token ids; the previous-token score is then the mean over positions
    holding one of them (a copy rule's cue: its head needs ``t-1`` only there, and
    elsewhere may rest on BOS), instead of over every position.
    """
    tokens = _tokens(model, 2 * (n_seqs // 2), seed)
    _, cache = run_with_cache(model, torch.as_tensor(tokens))
    b, t = tokens.shape
    y = np.tile(np.arange(1, t, dtype=np.float64), b)  # BOS (t = 0) left out: it is a token
    flat = lambda a: a[:, 1:].double().reshape(b * (t - 1), -1).numpy()  # noqa: E731
    layers = [_r2(flat(cache["blocks.0.hook_resid_pre"]), y)]
    layers += [
        _r2(flat(cache[f"blocks.{i}.hook_resid_post"]), y) for i in range(model.cfg.n_layers)
    ]
    pat = patterns(model, tokens)
    uniform = _uniformity(pat)
    steps = np.arange(2, t)
    at_prev = pat[..., steps, steps - 1]  # [L, B, H, T-2]
    if queries is None:
        previous = at_prev.mean(axis=(1, 3))
    else:
        mask = np.isin(tokens[:, steps], sorted(queries))[None, :, None, :]
        previous = (at_prev * mask).sum(axis=(1, 3)) / max(mask.sum(), 1)
    heads = []
    for layer in range(model.cfg.n_layers):
        result = cache[f"blocks.{layer}.attn.hook_result"]  # [B, T, H, D]
        for h in range(model.cfg.n_heads):
            r2 = _r2(flat(result[:, :, h]), y)
            heads.append(
                PositionHead(layer, h, r2, float(uniform[layer, h]), float(previous[layer, h]))
            )
    return PositionReport(tuple(layers), tuple(heads))


@dataclass(frozen=True)
class Comparison:
    """Whether two models derive and use position the same way, and why."""

    same: bool
    reasons: tuple[str, ...]


def compare(crafted: PositionReport, trained: PositionReport) -> Comparison:
    """Same first deriving layer, same kind of deriving head (uniform or not), and
    previous-token heads in the same layers."""
    reasons = []
    if crafted.derived_in != trained.derived_in:
        reasons.append(
            f"position is derived in layer {crafted.derived_in} by the crafted model, "
            f"{trained.derived_in} by the trained one"
        )
    kinds = [any(h.uniform >= UNIFORM for h in r.first_carriers()) for r in (crafted, trained)]
    if kinds[0] != kinds[1]:
        who = "crafted" if kinds[0] else "trained"
        reasons.append(f"only the {who} model derives it with a uniform head")
    prev = [sorted({h.layer for h in r.previous_heads()}) for r in (crafted, trained)]
    if prev[0] != prev[1]:
        reasons.append(f"previous-token heads in layers {prev[0]} (crafted) vs {prev[1]} (trained)")
    return Comparison(not reasons, tuple(reasons))
