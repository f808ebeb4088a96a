"""Attention-based head scores: previous-token, prefix-matching (induction), skip-bigram.

Shape glossary: B sequences, T positions, L layers, H heads.

Both scores read each layer's ``hook_pattern`` on random token sequences. A softmax
pattern is a distribution; the tensor family's bilinear pattern is signed and
unnormalised, so every row is first divided by its absolute mass ``sum_s |pattern[t, s]|``
(the identity for softmax). A score is then the mean normalised attention from each
query position to its target key; 1 means all of the head's attention goes there.

Sequences start with BOS when the model has one (input vocabulary = outputs + 1, BOS
last, as the compiler makes them) and otherwise use every input token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from craft.models.hooks import hooks
from craft.models.transformer import Transformer
from specs.errors import CraftError
from specs.model import Spec
from specs.targeted import contexts_for_rule


@dataclass(frozen=True)
class Probe:
    """Which tokens random sequences draw from, and the BOS prefix (None: no BOS)."""

    tokens: tuple[int, ...]
    bos: int | None

    @staticmethod
    def of(model: Transformer) -> Probe:
        cfg = model.cfg
        if cfg.n_vocab == cfg.n_out + 1:
            return Probe(tuple(range(cfg.n_out)), cfg.n_vocab - 1)
        return Probe(tuple(range(cfg.n_vocab)), None)

    def prefix(self, n: int) -> np.ndarray:
        return np.full((n, 0 if self.bos is None else 1), self.bos or 0, dtype=np.int64)


@torch.no_grad()
def patterns(model: Transformer, tokens: np.ndarray) -> np.ndarray:
    """Row-normalised attention patterns ``[L, B, H, T, T]`` (float64)."""
    caught: dict[int, torch.Tensor] = {}

    def catch(layer: int):
        def fn(_m, _i, out):
            caught[layer] = out.detach()

        return fn

    names = {f"blocks.{i}.attn.hook_pattern": catch(i) for i in range(model.cfg.n_layers)}
    with hooks(model, names):
        model(torch.as_tensor(tokens, device=next(model.parameters()).device))
    pat = np.stack([caught[i].cpu().double().numpy() for i in range(model.cfg.n_layers)])
    mass = np.abs(pat).sum(axis=-1, keepdims=True)
    return pat / np.where(mass > 0, mass, 1.0)


def previous_token_scores(
    model: Transformer, *, n_seqs: int = 16, length: int = 64, seed: int = 0
) -> np.ndarray:
    """Mean normalised attention from position t to t-1 on random tokens ``[L, H]``.

    Positions whose previous token is BOS are left out (BOS is often a resting place).
    """
    probe = Probe.of(model)
    rng = np.random.default_rng(seed)
    pre = probe.prefix(n_seqs)
    length = min(length, model.cfg.n_ctx - pre.shape[1])
    body = rng.choice(np.asarray(probe.tokens), size=(n_seqs, length))
    pat = patterns(model, np.concatenate([pre, body], axis=1))
    t = np.arange(pre.shape[1] + 1, pat.shape[-1])
    return pat[..., t, t - 1].mean(axis=(1, 3))


def prefix_matching_scores(
    model: Transformer,
    *,
    on: list[int] | None = None,
    tokens: list[int] | None = None,
    n_seqs: int = 16,
    half: int = 32,
    seed: int = 0,
) -> np.ndarray:
    """Induction score ``[L, H]``: attention to the token after the earlier copy.

    Each sequence is ``[BOS] x_1..x_n x_1..x_n`` with distinct ``x_i``; at the second
    ``x_i`` the target is the first ``x_{i+1}`` (the first copy's successor).

    Args:
        on: score only queries whose token is in this set (a rule's on-set, e.g. the
            nouns of a noun-induction rule); default every token.
        tokens: draw the ``x_i`` from these ids (default every non-BOS token), e.g. to
            keep out tokens that trigger a higher-priority rule.
        half: ``n``, capped by the distinct tokens and the context.
    """
    probe = Probe.of(model)
    if tokens is not None:
        probe = Probe(tuple(tokens), probe.bos)
    rng = np.random.default_rng(seed)
    pre = probe.prefix(n_seqs)
    b = pre.shape[1]
    n = min(half, len(probe.tokens), (model.cfg.n_ctx - b) // 2)
    if n < 2:
        raise CraftError(
            f"context of {model.cfg.n_ctx} is too short for a repeated sequence",
            fix="prefix matching needs n_ctx >= 4 (plus BOS)",
        )
    first = np.stack([rng.permutation(np.asarray(probe.tokens))[:n] for _ in range(n_seqs)])
    pat = patterns(model, np.concatenate([pre, first, first], axis=1))
    i = np.arange(n)
    query, key = b + n + i, b + i + 1  # [n]
    scores = pat[..., query, key]  # [L, B, H, n]
    keep = np.ones_like(first, dtype=bool) if on is None else np.isin(first, np.asarray(on))
    if not keep.any():
        raise CraftError("no query token lies in the on-set", fix="pass token ids the model has")
    w = keep[None, :, None, :].astype(np.float64)
    return (scores * w).sum(axis=(1, 3)) / w.sum(axis=(1, 3))


def skip_bigram_scores(
    model: Transformer, spec: Spec, rules: list[str], *, n: int = 48, seed: int = 0
) -> np.ndarray:
    """Skip-bigram score ``[L, H]``: attention from a cue to the anchors in its window.

    On ``n`` contexts built to make each rule fire (:func:`specs.targeted.contexts_for_rule`:
    the last token is a cue, an anchor lies ``lo..hi`` tokens back), the normalised
    attention mass at the last position on every anchor inside the window; averaged over
    contexts, then over ``rules``. 1 means all of the head's attention goes to the anchors.
    """
    by_name = {r.name: r for r in spec.rules}
    out = []
    for name in rules:
        rule = by_name[name]
        rng = np.random.default_rng(seed)
        ctxs = contexts_for_rule(spec, spec.rule_names().index(name), rng, n)
        width = 1 + max(len(c) for c in ctxs)
        tokens = np.full((len(ctxs), width), len(spec.vocab), dtype=np.int64)
        mask = np.zeros((len(ctxs), width), dtype=bool)  # keys that are anchors in the window
        last = np.array([len(c) for c in ctxs])
        lo, hi = rule.window
        for i, c in enumerate(ctxs):
            tokens[i, 1 : 1 + len(c)] = c
            for s in range(max(1, len(c) - hi), len(c) - lo + 1):
                mask[i, s] = c[s - 1] in rule.anchor
        pat = patterns(model, tokens)  # [L, B, H, T, T]
        rows = pat[:, np.arange(len(ctxs)), :, last, :]  # [B, L, H, T]
        out.append((rows * mask[:, None, None, :]).sum(-1).mean(0))
    return np.mean(out, axis=0)


def condition_scores(
    model: Transformer, spec: Spec, rules: list[str], *, n: int = 48, seed: int = 0
) -> np.ndarray:
    """Condition score ``[L, H]``: how much a head's attention switches with a trigram.

    On ``n`` contexts built to make each rule fire (the last token a cue, the one before
    an anchor) and on the same contexts with that anchor replaced by a token that is not
    one (the rule no longer fires there), the normalised attention mass from the last
    position to the pair's positions ``{t-1, t}``; the score is the absolute difference
    of the two means, averaged over ``rules``. 1: the head attends to the pair exactly
    when the rule holds (the compact compiler's trigram and readout heads); 0: its
    attention there ignores the condition (a previous-token head attends to ``t-1``
    either way). Rules without a first token (not trigrams) are skipped.
    """
    by_name = {r.name: r for r in spec.rules}
    out = []
    for name in rules:
        rule = by_name[name]
        others = [v for v in range(len(spec.vocab)) if v not in getattr(rule, "first", ())]
        if not hasattr(rule, "first") or not others:
            continue
        rng = np.random.default_rng(seed)
        fired = contexts_for_rule(spec, spec.rule_names().index(name), rng, n)
        broken = [c[:-2] + (others[int(rng.integers(len(others)))], c[-1]) for c in fired]
        out.append(abs(_pair_mass(model, spec, fired) - _pair_mass(model, spec, broken)))
    if not out:
        raise CraftError(f"no trigram among {rules}", fix="score trigram rules only")
    return np.mean(out, axis=0)


def _pair_mass(model: Transformer, spec: Spec, ctxs: list[tuple[int, ...]]) -> np.ndarray:
    """Mean normalised attention ``[L, H]`` from the last position to the last two tokens."""
    width = 1 + max(len(c) for c in ctxs)
    tokens = np.full((len(ctxs), width), len(spec.vocab), dtype=np.int64)
    last = np.array([len(c) for c in ctxs])
    for i, c in enumerate(ctxs):
        tokens[i, 1 : 1 + len(c)] = c
    rows = patterns(model, tokens)[:, np.arange(len(ctxs)), :, last, :]  # [B, L, H, T]
    pair = rows[np.arange(len(ctxs)), ..., last] + rows[np.arange(len(ctxs)), ..., last - 1]
    return pair.mean(0)
