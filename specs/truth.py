"""The ground truth: the exact next-token distribution of ANY context.

Positions: BOS at 0, the context's tokens at ``1..t`` (``t = len(context)``). The
distribution of ``x[t+1]`` is given by the FIRST rule, in file order, whose condition
holds at ``t`` (``t = 0``, BOS only, gives the start distribution):

* bigram: ``x[t]`` is a key of the table (precedence token > category > ``"*"``);
* trigram: ``t >= 2``, ``x[t-1] in first`` and ``x[t] in second``;
* skip_bigram: ``x[t] in cue`` and some ``s >= 1`` with ``lo <= t - s <= hi`` has
  ``x[s] in anchor``;
* induction: ``x[t] in on`` and ``x[s] == x[t]`` for some ``1 <= s < t``; the next token
  is ``x[s*+1]`` for the smallest such ``s*`` (the earliest occurrence wins);
* bracket: ``x[t] in cue`` and the bracket stack of ``x[1..t]`` (openers push, the top's
  closer pops, other closers are ignored) is non-empty; the next token is the top's
  closer;
* copy: ``x[t] in cue`` and ``t - offset >= 1``; the next token is ``x[t - offset]``.

:func:`next_dist_exact` implements this in plain Python over fractions and is the
oracle (each condition is its kind's ``exact`` hook, :mod:`specs.kinds`);
:func:`truth` is the batched numpy version (:mod:`specs.engine`); the tests check
that they agree on every position.

Shape glossary: ``B`` batch, ``T`` columns (BOS at column 0), ``V`` vocabulary size.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import numpy as np

from specs.engine import Evaluator
from specs.errors import CraftError
from specs.kinds import kind_of
from specs.model import BOS, Dist, Spec


def check_context(spec: Spec, context: Sequence[int]) -> tuple[int, ...]:
    """Validate token ids after BOS (at most ``max_len`` of them).

    Raises:
        CraftError: a non-integer, an id outside ``0..V-1`` (BOS included), or too long.
    """
    vocab_size = len(spec.vocab)
    out = []
    for i, token in enumerate(context):
        if isinstance(token, bool) or not isinstance(token, int | np.integer):
            raise CraftError(
                f"context[{i}] is {token!r}, not a token id",
                where=f"{spec.name} context",
                fix="pass token ids (use specs.encode to turn names into ids)",
            )
        if not 0 <= token < vocab_size:
            raise CraftError(
                f"context[{i}] = {int(token)} is not a token id (0..{vocab_size - 1})",
                where=f"{spec.name} context",
                fix=f"pass the tokens after BOS only; BOS (id {vocab_size}) is implicit",
            )
        out.append(int(token))
    if len(out) > spec.max_len:
        raise CraftError(
            f"context has {len(out)} tokens, more than max_len {spec.max_len}",
            where=f"{spec.name} context",
            fix=f"use at most {spec.max_len} tokens",
        )
    return tuple(out)


def encode(spec: Spec, tokens: Sequence[str]) -> tuple[int, ...]:
    """Token names -> token ids.

    Raises:
        CraftError: an unknown token name.
    """
    out = []
    for i, name in enumerate(tokens):
        try:
            out.append(spec.vocab.index(name))
        except (KeyError, TypeError):
            close = difflib.get_close_matches(str(name), spec.vocab.tokens, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise CraftError(
                f"tokens[{i}] = {name!r} is not a token of spec {spec.name!r}",
                where=f"{spec.name} tokens",
                fix=f"{hint}use tokens from the spec's vocab",
            ) from None
    return tuple(out)


def rule_index(spec: Spec, name: str) -> int:
    """Rule id of a rule name (``"start"`` is ``spec.start_rule_id``).

    Raises:
        CraftError: no rule of that name.
    """
    names = spec.rule_names()
    if name not in names:
        raise CraftError(
            f"no rule named {name!r} in spec {spec.name!r}",
            where=spec.source or spec.name,
            fix=f"use one of: {', '.join(names)}",
        )
    return names.index(name)


def next_dist_exact(spec: Spec, context: Sequence[int]) -> tuple[Dist, int]:
    """The exact distribution of the next token and the rule that gives it.

    Args:
        spec: a resolved spec.
        context: token ids after BOS (empty: only BOS, giving ``spec.start``).

    Returns:
        ``(dist, rule_id)``; ``rule_id`` indexes ``spec.rule_names()``.

    Raises:
        CraftError: an invalid context, or a context no rule covers (impossible for a
            loaded spec).
    """
    ctx = check_context(spec, context)
    if not ctx:
        return spec.start, spec.start_rule_id
    vocab_size = len(spec.vocab)
    x = (vocab_size, *ctx)  # x[0] = BOS, x[1..t] = context
    for rule_id, rule in enumerate(spec.rules):
        dist = kind_of(rule).exact(rule, x, vocab_size)
        if dist is not None:
            return dist, rule_id
    raise CraftError(
        f"no rule covers the context {spec.vocab.decode(x)}",
        where=spec.source or spec.name,
        fix=f'add a fallback bigram with a "*" key as the last rule (context starts {BOS})',
    )


def next_dist(spec: Spec, context: Sequence[int]) -> tuple[np.ndarray, int]:
    """Float version of :func:`next_dist_exact`: (probs float64 [V], rule_id)."""
    dist, rule_id = next_dist_exact(spec, context)
    return dist.array(), rule_id


def check_tokens(spec: Spec, tokens: np.ndarray) -> np.ndarray:
    """Validate a token array: int [B, T], BOS in column 0, token ids after it.

    Returns:
        The tokens as int64 [B, T].

    Raises:
        CraftError: wrong shape or dtype, a missing BOS, an invalid id, or ``T - 1 > max_len``.
    """
    arr = np.asarray(tokens)
    bos, where = len(spec.vocab), f"{spec.name} tokens"
    if arr.ndim != 2 or arr.shape[1] < 1 or not np.issubdtype(arr.dtype, np.integer):
        raise CraftError(
            f"expected an integer array [B, T] with T >= 1, got {arr.dtype} {arr.shape}",
            where=where,
            fix="pass int64 token ids shaped [batch, 1 + length]",
        )
    arr = arr.astype(np.int64, copy=False)
    if arr.shape[1] - 1 > spec.max_len:
        raise CraftError(
            f"{arr.shape[1] - 1} tokens after BOS, more than max_len {spec.max_len}",
            where=where,
            fix=f"pass at most 1 + {spec.max_len} columns",
        )
    if (arr[:, 0] != bos).any():
        raise CraftError(
            f"column 0 must be BOS (id {bos})", where=where, fix="prepend the BOS id to every row"
        )
    body = arr[:, 1:]
    if ((body < 0) | (body >= bos)).any():
        raise CraftError(
            f"token ids after column 0 must be in 0..{bos - 1}",
            where=where,
            fix="use BOS only in column 0, and only ids of the spec's vocab",
        )
    return arr


def truth(spec: Spec, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ground truth at every position of a batch of sequences.

    Args:
        spec: a resolved spec.
        tokens: int [B, T], BOS id in column 0, token ids after it (``T - 1 <= max_len``).

    Returns:
        probs float64 [B, T, V] (row ``t`` is the distribution of the token after
        position ``t``) and rule_ids int64 [B, T] (the rule firing at ``t``).

    Raises:
        CraftError: an invalid token array.
    """
    arr = check_tokens(spec, tokens)
    batch, length = arr.shape
    probs = np.empty((batch, length, len(spec.vocab)))
    rule_ids = np.empty((batch, length), dtype=np.int64)
    evaluator = Evaluator(spec, batch, length - 1)
    for t in range(length):
        probs[:, t], rule_ids[:, t] = evaluator.step(arr)
    return probs, rule_ids
