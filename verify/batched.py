"""Batched evaluation of single contexts: the workhorse of property checks.

Contexts are token-id lists after BOS, of any lengths. The models are causal, so a
batch is padded *after* each context and read at the context's last position.

A causal model's output at position ``t`` depends on positions ``<= t`` only, so a
context that is a prefix of another in the same batch costs nothing: :func:`shared`
finds the *carriers* (contexts that are no other's prefix) and where each context ends
in one, and only the carriers run, ``CHUNK`` at a time, sorted by length. A long
sampled or planted sequence then checks every prefix of itself in one pass. A
bidirectional model (Tracr's) and per-row patches (patching from a donor batch) run
every context on its own.

Shape glossary: N contexts, M carriers, W = 1 + longest context, V vocabulary.
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


CHUNK = 64  # carriers in one forward pass


def shared(contexts: Sequence[Sequence[int]]) -> tuple[list[list[int]], np.ndarray]:
    """The carriers ``[M]`` (contexts that are no other's prefix, longest first) and,
    per context, the carrier it is a prefix of ``[N]`` (it ends at its own length).

    Prefixes are found with a chained hash per position, confirmed by comparing tokens,
    so the work is linear in the total length.
    """
    carriers: list[list[int]] = []
    at: dict[tuple[int, int], int] = {}  # (length, chained hash) -> carrier
    row = np.zeros(len(contexts), dtype=np.int64)
    for i in sorted(range(len(contexts)), key=lambda j: -len(contexts[j])):
        ctx, h = list(contexts[i]), 0
        keys = []
        for tok in ctx:
            h = hash((h, int(tok)))
            keys.append((len(keys) + 1, h))
        key = keys[-1] if keys else (0, 0)
        c = at.get(key)
        if c is not None and carriers[c][: len(ctx)] == ctx:
            row[i] = c
            continue
        row[i] = len(carriers)
        for k in [(0, 0), *keys]:
            at.setdefault(k, len(carriers))
        carriers.append(ctx)
    return carriers, row


def _passes(model: Transformer, contexts, per_row: bool):
    """Yield ``(padded tokens [m, w], indices [m] into contexts, ends [m])`` per forward
    pass: the carriers of the batch (or every context, when ``per_row`` or the model is
    bidirectional), ``CHUNK`` at a time, similar lengths together."""
    if per_row or not model.cfg.causal:
        yield contexts, np.arange(len(contexts)), None
        return
    carriers, row = shared(contexts)
    order = sorted(range(len(carriers)), key=lambda c: len(carriers[c]))
    for k in range(0, len(order), CHUNK):
        yield [carriers[c] for c in order[k : k + CHUNK]], np.array(order[k : k + CHUNK]), row


def model_logprobs(
    model: Transformer,
    spec: Spec,
    contexts: Sequence[Sequence[int]],
    patch: dict[str, Callable] | None = None,
    per_row: bool | None = None,
) -> np.ndarray:
    """float64 log-probabilities of the next token after each context ``[N, V]``.

    ``patch`` maps hook-point names to forward hooks applied during the pass (ablation).
    ``per_row`` runs each context in its own row (no prefix sharing): the default when a
    patch is given, since a patch may read its row (patching from a donor batch); pass
    ``per_row=False`` for a patch that treats every row alike (zero or mean ablation).
    """
    per_row = patch is not None if per_row is None else per_row
    out = np.zeros((len(contexts), model.cfg.n_out))
    lengths = np.array([len(c) for c in contexts], dtype=np.int64)
    for part, ids, row in _passes(model, contexts, per_row):
        tokens, last = pad(spec, part)
        with torch.no_grad(), hooks(model, patch or {}):
            logits = model(torch.from_numpy(tokens))
        if row is None:  # every context in its own row
            at_last = logits[torch.arange(len(part)), torch.from_numpy(last)]
            out[ids] = torch.log_softmax(at_last.double(), -1).numpy()
            continue
        slot = {int(c): j for j, c in enumerate(ids)}
        mine = [i for i in range(len(contexts)) if int(row[i]) in slot]
        rows = torch.tensor([slot[int(row[i])] for i in mine], dtype=torch.long)
        read = logits[rows, torch.from_numpy(lengths[mine])]
        out[mine] = torch.log_softmax(read.double(), -1).numpy()
    return out


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
    """The head's attention row at each context's last position ``[N, W]`` (zero beyond
    the context: the mask)."""
    width = 1 + max((len(c) for c in contexts), default=0)
    out = np.zeros((len(contexts), width))
    lengths = np.array([len(c) for c in contexts], dtype=np.int64)
    seen: dict[str, torch.Tensor] = {}

    def save(_m, _i, got):
        seen["p"] = got.detach()

    for part, ids, row in _passes(model, contexts, False):
        tokens, last = pad(spec, part)
        with torch.no_grad(), hooks(model, {f"blocks.{layer}.attn.hook_pattern": save}):
            model(torch.from_numpy(tokens))
        pattern = seen["p"][:, head].double().numpy()  # [m, T, S]
        if row is None:
            out[ids, : pattern.shape[-1]] = pattern[np.arange(len(part)), last]
            continue
        slot = {int(c): j for j, c in enumerate(ids)}
        mine = [i for i in range(len(contexts)) if int(row[i]) in slot]
        rows = [slot[int(row[i])] for i in mine]
        out[mine, : pattern.shape[-1]] = pattern[rows, lengths[mine]]
    return out


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
