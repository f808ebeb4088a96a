"""Batched evaluation of a spec's rules, one position at a time (numpy, float64).

This is the vectorised twin of :func:`specs.truth.next_dist_exact` (which is pure
Python over exact fractions and serves as its oracle in the tests). :func:`specs.truth.truth`
runs it over given tokens; :func:`specs.sample.sample` runs it while drawing tokens.

Shape glossary: ``B`` batch, ``T`` columns of a token array (BOS at column 0, token
``x[t]`` at column ``t``), ``V`` vocabulary size; index ``V`` (BOS) is added to every
per-token mask so that masks can be indexed by any column and BOS never matches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from specs.errors import CraftError
from specs.model import Bigram, Induction, Rule, SkipBigram, Spec, Trigram


def _mask(ids: frozenset[int], vocab_size: int) -> np.ndarray:
    """bool [V+1]: membership of each token id (BOS, the last entry, is never in)."""
    mask = np.zeros(vocab_size + 1, dtype=bool)
    mask[list(ids)] = True
    return mask


@dataclass(frozen=True)
class StepState:
    """What the rules may read at position ``t``.

    Attributes:
        tokens: int64 [B, T]; columns ``0..t`` are filled.
        t: current position (``>= 1``).
        first_seen: int64 [B]: smallest ``s >= 1`` with ``x[s] == x[t]`` and ``s < t``,
            or 0 when ``x[t]`` has not occurred before.
    """

    tokens: np.ndarray
    t: int
    first_seen: np.ndarray

    @property
    def current(self) -> np.ndarray:
        return self.tokens[:, self.t]


@dataclass(frozen=True)
class _BigramArrays:
    keys: np.ndarray  # bool [V+1]
    table: np.ndarray  # float64 [V+1, V], zero rows for non-keys

    def match(self, st: StepState) -> np.ndarray:
        return self.keys[st.current]

    def rows(self, st: StepState, hit: np.ndarray) -> np.ndarray:
        return self.table[st.current[hit]]


@dataclass(frozen=True)
class _TrigramArrays:
    first: np.ndarray  # bool [V+1]
    second: np.ndarray  # bool [V+1]
    next: np.ndarray  # float64 [V]

    def match(self, st: StepState) -> np.ndarray:
        if st.t < 2:
            return np.zeros(len(st.tokens), dtype=bool)
        return self.first[st.tokens[:, st.t - 1]] & self.second[st.current]

    def rows(self, st: StepState, hit: np.ndarray) -> np.ndarray:
        return self.next


@dataclass(frozen=True)
class _SkipBigramArrays:
    anchor: np.ndarray  # bool [V+1]
    cue: np.ndarray  # bool [V+1]
    lo: int
    hi: int
    next: np.ndarray  # float64 [V]

    def match(self, st: StepState) -> np.ndarray:
        first, last = max(1, st.t - self.hi), st.t - self.lo  # anchor positions s
        if last < first:
            return np.zeros(len(st.tokens), dtype=bool)
        anchored = self.anchor[st.tokens[:, first : last + 1]].any(axis=1)
        return self.cue[st.current] & anchored

    def rows(self, st: StepState, hit: np.ndarray) -> np.ndarray:
        return self.next


@dataclass(frozen=True)
class _InductionArrays:
    on: np.ndarray  # bool [V+1]
    vocab_size: int

    def match(self, st: StepState) -> np.ndarray:
        return self.on[st.current] & (st.first_seen > 0)

    def rows(self, st: StepState, hit: np.ndarray) -> np.ndarray:
        copied = st.tokens[hit, st.first_seen[hit] + 1]  # x[s* + 1], s* + 1 <= t
        out = np.zeros((len(copied), self.vocab_size))
        out[np.arange(len(copied)), copied] = 1.0
        return out


_Arrays = _BigramArrays | _TrigramArrays | _SkipBigramArrays | _InductionArrays


def _arrays(rule: Rule, vocab_size: int) -> _Arrays:
    if isinstance(rule, Bigram):
        table = np.zeros((vocab_size + 1, vocab_size))
        for token, dist in rule.table:
            table[token] = dist.array()
        return _BigramArrays(_mask(rule.keys, vocab_size), table)
    if isinstance(rule, Trigram):
        first, second = _mask(rule.first, vocab_size), _mask(rule.second, vocab_size)
        return _TrigramArrays(first, second, rule.next.array())
    if isinstance(rule, SkipBigram):
        anchor, cue = _mask(rule.anchor, vocab_size), _mask(rule.cue, vocab_size)
        return _SkipBigramArrays(anchor, cue, *rule.window, rule.next.array())
    if isinstance(rule, Induction):
        return _InductionArrays(_mask(rule.on, vocab_size), vocab_size)
    raise CraftError(f"unknown rule kind {type(rule).__name__}", fix="use a rule from specs.model")


class Evaluator:
    """Evaluates the rules over a batch, position after position.

    Call :meth:`step` for ``t = 0, 1, 2, ...`` in order; it keeps, per row, the first
    position of every token seen so far (for induction), so one pass is ``O(B T R)``.
    """

    def __init__(self, spec: Spec, batch: int):
        self.vocab = spec.vocab
        self.vocab_size = len(spec.vocab)
        self.start = spec.start.array()
        self.start_rule_id = spec.start_rule_id
        self.rules = tuple(_arrays(rule, self.vocab_size) for rule in spec.rules)
        self.first_pos = np.zeros((batch, self.vocab_size + 1), dtype=np.int64)  # 0 = unseen
        self.t = 0

    def step(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distribution of ``x[t+1]`` for every row, then advance ``t``.

        Args:
            tokens: int64 [B, T] with columns ``0..t`` filled (column 0 is BOS).

        Returns:
            probs float64 [B, V] and the firing rule ids int64 [B].
        """
        batch, t = len(tokens), self.t
        self.t += 1
        if t == 0:
            probs = np.broadcast_to(self.start, (batch, self.vocab_size)).copy()
            return probs, np.full(batch, self.start_rule_id, dtype=np.int64)
        rows = np.arange(batch)
        current = tokens[:, t]
        state = StepState(tokens, t, self.first_pos[rows, current])
        probs = np.zeros((batch, self.vocab_size))
        rule_ids = np.full(batch, -1, dtype=np.int64)
        pending = np.ones(batch, dtype=bool)
        for rule_id, rule in enumerate(self.rules):
            hit = rule.match(state) & pending
            if hit.any():
                probs[hit] = rule.rows(state, hit)
                rule_ids[hit] = rule_id
                pending &= ~hit
                if not pending.any():
                    break
        if pending.any():
            row = int(np.argmax(pending))
            raise CraftError(
                f"no rule covers the context {self.vocab.decode(tokens[row, : t + 1])}",
                where="spec rules",
                fix='add a fallback bigram with a "*" key as the last rule',
            )
        unseen = state.first_seen == 0
        self.first_pos[rows[unseen], current[unseen]] = t
        return probs, rule_ids

