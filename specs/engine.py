"""Batched evaluation of a spec's rules, one position at a time (numpy, float64).

This is the vectorised twin of :func:`specs.truth.next_dist_exact` (which is pure
Python over exact fractions and serves as its oracle in the tests). :func:`specs.truth.truth`
runs it over given tokens; :func:`specs.sample.sample` runs it while drawing tokens.

The rules are compiled once per spec (:func:`compiled`, cached) into lookup tables, so
that one position costs a fixed, small number of numpy operations whatever the number
of rules (no per-rule loop, no data-dependent branches):

* **local rules** (bigram, trigram) depend only on ``(x[t-1], x[t])``: one table
  ``[prev class, x[t]]`` gives the first local rule that fires and its distribution.
  Previous tokens are grouped into classes by their membership in the trigrams'
  ``first`` sets (one class when there are no trigrams), so the table is small;
* **skip-bigrams** keep, per rule and row, the last ``t`` at which the window still
  holds an anchor: ``s + hi`` for the latest anchor position ``s <= t - lo`` (updated
  with the one position that enters the window at each step); the rule holds iff
  ``x[t]`` is a cue and that value is ``>= t``;
* **induction** keeps, per row and token, what followed its first occurrence
  (``-1`` while unseen), written when the follower is known;
* the firing rule is the smallest rule id among these (ids are priorities). Each
  candidate is packed as ``code = rule id * D + distribution id`` (``D`` distributions),
  so one elementwise ``minimum`` picks both, and ``divmod`` unpacks them.

Every distribution a rule can give (deduplicated, plus the one-hot of every token for
induction) has an id; :meth:`Evaluator.draw` draws from ids by inverse CDF with exactly
the arithmetic of :func:`specs.sample.draw` (the same token for the same uniform).

Shape glossary: ``B`` batch, ``T`` columns of a token array (BOS at column 0, token
``x[t]`` at column ``t``), ``V`` vocabulary size; index ``V`` (BOS) is added to every
per-token table so that tables can be indexed by any column and BOS never matches.
"""

from __future__ import annotations

import weakref

import numpy as np

from specs.errors import CraftError
from specs.model import Bigram, Dist, Induction, SkipBigram, Spec, Trigram

_TWO53 = float(2**53)  # numpy's float64 uniforms are k / 2**53, k in 0..2**53-1
_GUIDE_LIMIT = 1 << 21  # entries of the guide table (distributions x buckets)
_GUIDE_BITS = 10  # at most 1024 buckets per distribution
_LINEAR_STEPS = 4  # up to this many entries per bucket, step; beyond, bisect
_DENSE_LIMIT = 1 << 22  # entries of the dense [dists, V] table kept for truth()


def uniforms_as_ints(uniforms: np.ndarray) -> np.ndarray:
    """float64 uniforms of numpy's Generator (``k / 2**53``) -> the integers ``k``."""
    return (np.asarray(uniforms, dtype=np.float64) * _TWO53).astype(np.int64)


def _compact(table: np.ndarray) -> np.ndarray:
    """Big index tables in the smallest signed int dtype that holds them (memory)."""
    if table.size <= 1 << 16:
        return table.astype(np.int64)
    hi = int(table.max(initial=0))
    lo = int(table.min(initial=0))
    dtype = np.int16 if lo >= -(2**15) and hi < 2**15 else np.int32
    return table.astype(dtype)


class _Dists:
    """The distributions rules give, by id: id ``x < V`` is the one-hot of token ``x``
    (induction copies a token), then the rules' distributions from ``V`` on."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size
        self._ids: dict[Dist, int] = {}

    def id(self, dist: Dist) -> int:
        return self._ids.setdefault(dist, self.vocab_size + len(self._ids))

    def freeze(self) -> None:
        """Build the flat CDF segments (one per distribution) and the lookup arrays."""
        v = self.vocab_size
        total = len(self._ids) + v
        ids, probs, cdfs, lens = [np.arange(v, dtype=np.int64)], [np.ones(v)], [np.ones(v)], [1] * v
        for dist in self._ids:  # insertion order == id order
            p = np.array([float(q) for _, q in dist.items])
            cdf = np.cumsum(p)  # the same float additions as a dense cumsum (zeros add 0)
            cdf /= cdf[-1:]
            ids.append(np.array(dist.support, dtype=np.int64))
            probs.append(p)
            cdfs.append(cdf)
            lens.append(len(p))
        self.lens = np.array(lens, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lens)[:-1]]).astype(np.int64)
        self.tokens = np.concatenate(ids)
        self.probs = np.concatenate(probs)
        # u < cdf  <=>  k < ceil(cdf * 2**53) for u = k / 2**53 (exact: scaling by 2**53)
        self.ceil = np.ceil(np.concatenate(cdfs) * _TWO53).astype(np.int64)
        self.last = self.starts + self.lens - 1
        self._guide(total)
        self.dense = None
        if total * v <= _DENSE_LIMIT:
            self.dense = np.zeros((total, v))
            self.dense[np.repeat(np.arange(total), self.lens), self.tokens] = self.probs

    def _guide(self, total: int) -> None:
        """Guide table (Chen and Asau): split ``k`` into ``G`` buckets of width ``W``;
        ``guide[d * G + g]`` is the answer for the smallest ``k`` of bucket ``g`` (the
        first entry of segment ``d`` with ``ceil > g W``). Any ``k`` of the bucket lies at
        most ``max_steps`` entries further (the entries with ``g W < ceil < (g + 1) W``)."""
        bits = min(_GUIDE_BITS, max(0, (_GUIDE_LIMIT // total).bit_length() - 1))
        buckets, self.shift = 1 << bits, 53 - bits
        self.bits = bits
        seg = np.repeat(np.arange(total, dtype=np.int64), self.lens)
        # entry j is passed (counted) by every bucket start g W >= ceil_j
        first = -(-self.ceil // (1 << self.shift))  # 0..G
        hist = np.bincount(seg * (buckets + 1) + first, minlength=total * (buckets + 1))
        counts = np.cumsum(hist.reshape(total, buckets + 1), axis=1)[:, :buckets]
        self.guide = (self.starts[:, None] + counts).reshape(-1)
        inner = (self.ceil & ((1 << self.shift) - 1)) != 0
        bucket = seg * buckets + (self.ceil >> self.shift)
        self.max_steps = int(np.bincount(bucket[inner]).max(initial=0))

    def draw(self, dist: np.ndarray, k: np.ndarray, bucket: np.ndarray | None = None) -> np.ndarray:
        """Token of each row: the first of its distribution's support whose normalised
        CDF exceeds ``u = k / 2**53``; int64 [B]. ``bucket`` is ``k >> self.shift``
        when the caller has it already."""
        if bucket is None:
            bucket = k >> self.shift
        pos = self.guide.take((dist << self.bits) + bucket)
        if self.max_steps <= _LINEAR_STEPS:
            for _ in range(self.max_steps):
                pos += self.ceil.take(pos) <= k
            return self.tokens.take(pos)
        lo, hi = pos, np.minimum(pos + self.max_steps, self.last.take(dist))  # answer in
        for _ in range(self.max_steps.bit_length()):
            mid = (lo + hi) >> 1
            above = self.ceil.take(mid) > k
            hi = np.where(above, mid, hi)
            lo = np.where(above, lo, mid + 1)
        return self.tokens.take(lo)

    def dense_rows(self, dist: np.ndarray) -> np.ndarray:
        """float64 [B, V]: the probabilities of each row's distribution."""
        if self.dense is not None:
            return self.dense.take(dist, axis=0)
        lens = self.lens.take(dist)
        rows = np.repeat(np.arange(len(dist)), lens)
        within = np.arange(len(rows)) - np.repeat(np.cumsum(lens) - lens, lens)
        flat = np.repeat(self.starts.take(dist), lens) + within
        out = np.zeros((len(dist), self.vocab_size))
        out[rows, self.tokens[flat]] = self.probs[flat]
        return out


class Tables:
    """A spec compiled into lookup tables (see the module docstring); build it with
    :func:`compiled`, which caches one per spec object."""

    def __init__(self, spec: Spec):
        v = len(spec.vocab)
        n_rules = len(spec.rules)
        big = n_rules + 1  # "no rule": larger than every rule id and the start id
        self.vocab, self.vocab_size, self.big = spec.vocab, v, big
        self.start_rule_id = spec.start_rule_id
        dists = _Dists(v)
        self.start_dist = dists.id(spec.start)
        bigram_rule = np.full(v + 1, big, dtype=np.int64)
        bigram_dist = np.zeros(v + 1, dtype=np.int64)
        fixed_dist = np.zeros(n_rules + 2, dtype=np.int64)  # trigram/skip rule -> dist
        induction_rule = np.full(v + 1, big, dtype=np.int64)
        trigrams: list[tuple[int, Trigram]] = []
        skips: list[tuple[int, SkipBigram]] = []
        for rule_id, rule in enumerate(spec.rules):
            if isinstance(rule, Bigram):
                for token, dist in rule.table:
                    if bigram_rule[token] == big:
                        bigram_rule[token] = rule_id
                        bigram_dist[token] = dists.id(dist)
            elif isinstance(rule, Trigram):
                trigrams.append((rule_id, rule))
                fixed_dist[rule_id] = dists.id(rule.next)
            elif isinstance(rule, SkipBigram):
                skips.append((rule_id, rule))
                fixed_dist[rule_id] = dists.id(rule.next)
            elif isinstance(rule, Induction):
                on = np.array(sorted(rule.on), dtype=np.int64)
                induction_rule[on] = np.minimum(induction_rule[on], rule_id)
            else:
                raise CraftError(
                    f"unknown rule kind {type(rule).__name__}", fix="use a rule from specs.model"
                )
        dists.freeze()
        self.dists = dists
        width = len(dists.lens)  # D: packed code = rule id * D + distribution id
        self.code_width, self.no_code = width, big * width  # no_code: "no rule fires"
        self.covered = bool((bigram_rule[:v] < big).all())  # every context has a rule

        # local rules: [prev class, current token] -> first bigram/trigram rule, its dist
        prev_class = np.zeros(v + 1, dtype=np.int64)
        local_rule, local_dist = bigram_rule[None, :], bigram_dist[None, :]
        if trigrams:
            first = np.zeros((v + 1, len(trigrams)), dtype=bool)
            second = np.zeros((v + 1, len(trigrams)), dtype=bool)
            for i, (_, rule) in enumerate(trigrams):
                first[sorted(rule.first), i] = True
                second[sorted(rule.second), i] = True
            first_sets, prev_class = np.unique(first, axis=0, return_inverse=True)
            second_sets, cur_class = np.unique(second, axis=0, return_inverse=True)
            prev_class, cur_class = prev_class.reshape(-1), cur_class.reshape(-1)
            by_class = np.full((len(first_sets), len(second_sets)), big, dtype=np.int32)
            for i in reversed(range(len(trigrams))):  # the first trigram written last
                by_class[np.ix_(first_sets[:, i], second_sets[:, i])] = trigrams[i][0]
            tri_rule = by_class[:, cur_class]  # [prev classes, V + 1]
            tri_wins = tri_rule < bigram_rule
            local_rule = np.where(tri_wins, tri_rule, bigram_rule)
            local_dist = np.where(tri_wins, fixed_dist[tri_rule], bigram_dist)
        self.prev_offset = prev_class * (v + 1)  # flat row offset of each previous token
        self.local_code = _compact(local_rule * width + local_dist).reshape(-1)

        # skip-bigrams, stacked in priority order, rule-major ([S, ...]) for fast reductions
        self.n_skips = len(skips)
        if skips:
            lo = np.array([r.window[0] for _, r in skips], dtype=np.int64)
            self.skip_lo, self.skip_same_lo = lo, bool((lo == lo[0]).all())
            hi = np.array([r.window[1] for _, r in skips], dtype=np.int64)[:, None]
            self.skip_hi = int(hi[0, 0]) if (hi == hi[0, 0]).all() else hi
            self.anchor = np.zeros((len(skips), v + 1), dtype=bool)
            cue = np.zeros((len(skips), v + 1), dtype=bool)
            for j, (_, rule) in enumerate(skips):
                self.anchor[j, sorted(rule.anchor)] = True
                cue[j, sorted(rule.cue)] = True
            ids = np.array([rule_id for rule_id, _ in skips], dtype=np.int64)[:, None]
            codes = ids * width + fixed_dist[ids]
            self.cue_code = _compact(np.where(cue, codes, self.no_code))  # [S, V + 1]
            self.skip_rows = np.arange(len(skips))[:, None]
        # induction: rule id * D + (one-hot dist id of the follower, or no_code if unseen)
        self.has_induction = bool((induction_rule < big).any())
        self.induction_base = np.where(induction_rule < big, induction_rule * width, self.no_code)


_CACHE: dict[int, tuple[weakref.ref, Tables]] = {}


def compiled(spec: Spec) -> Tables:
    """The :class:`Tables` of a spec, built once per spec object."""
    key = id(spec)
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is spec:
        return hit[1]
    tables = Tables(spec)
    _CACHE[key] = (weakref.ref(spec, lambda _ref, k=key: _CACHE.pop(k, None)), tables)
    return tables


class Evaluator:
    """Evaluates the rules over a batch, position after position.

    Call :meth:`step` (or :meth:`step_ids`) for ``t = 0, 1, 2, ...`` in order; it keeps,
    per row, until when each skip-bigram's window holds an anchor and what followed the
    first occurrence of every token (for induction), so one pass is ``O(B T)`` numpy
    work with a fixed number of operations per position.
    """

    def __init__(self, spec: Spec, batch: int):
        tab = compiled(spec)
        self.tables = tab
        self.vocab_size = tab.vocab_size
        self.batch = batch
        self.t = 0
        if tab.n_skips:
            # active_until[j, b]: last t at which an anchor seen so far is in rule j's window
            self.active_until = np.full((tab.n_skips, batch), -1, dtype=np.int64)
        if tab.has_induction:
            # follower[b * (V + 1) + x]: the token after the first x (= its one-hot dist id)
            self.follower = np.full(batch * (tab.vocab_size + 1), tab.no_code, dtype=np.int64)
            self.row_offset = np.arange(batch, dtype=np.int64) * (tab.vocab_size + 1)
            self._pending: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def step_ids(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distribution ids (see :meth:`draw`) and firing rule ids of ``x[t+1]``, int [B]
        each, for every row; then advance ``t``.

        Args:
            tokens: int64 [B, T] with columns ``0..t`` filled (column 0 is BOS).
        """
        tab, t = self.tables, self.t
        self.t += 1
        if t == 0:
            batch = len(tokens)
            return (
                np.full(batch, tab.start_dist, dtype=np.int64),
                np.full(batch, tab.start_rule_id, dtype=np.int64),
            )
        current = tokens[:, t]
        flat = tab.prev_offset.take(tokens[:, t - 1])
        flat += current
        code = tab.local_code.take(flat)
        if tab.n_skips:
            code = np.minimum(code, self._skip(tokens, t, current))
        if tab.has_induction:
            code = np.minimum(code, self._induction(current))
        rule, dist = np.divmod(code, tab.code_width)
        if not tab.covered and (rule >= tab.big).any():
            row = int(np.argmax(rule >= tab.big))
            raise CraftError(
                f"no rule covers the context {tab.vocab.decode(tokens[row, : t + 1])}",
                where="spec rules",
                fix='add a fallback bigram with a "*" key as the last rule',
            )
        return dist, rule

    def _skip(self, tokens: np.ndarray, t: int, current: np.ndarray) -> np.ndarray:
        """Packed code of the first firing skip-bigram per row (``no_code`` when none)."""
        tab, until = self.tables, self.active_until
        if tab.skip_same_lo:
            s = t - int(tab.skip_lo[0])  # the anchor position entering the window
            if s >= 1:  # an anchor at s keeps its rule's window open until t = s + hi
                np.copyto(until, s + tab.skip_hi, where=tab.anchor.take(tokens[:, s], axis=1))
        else:
            s = t - tab.skip_lo
            entering = tokens[:, np.maximum(s, 0)].T  # [S, B]; column 0 (BOS): no anchor
            hit = tab.anchor[tab.skip_rows, entering]
            np.copyto(until, s[:, None] + tab.skip_hi, where=hit)
        cue_code = tab.cue_code.take(current, axis=1)
        return np.where(until >= t, cue_code, tab.no_code).min(axis=0)

    def _induction(self, current: np.ndarray) -> np.ndarray:
        """Packed code of the induction rule per row: ``>= no_code`` when it cannot fire
        (``x[t]`` in no ``on`` or not seen before)."""
        tab = self.tables
        if self._pending is not None:  # x[t] follows x[t-1]: record it if x[t-1] was new
            where, old, new = self._pending
            self.follower[where] = np.where(new, current, old)
        where = self.row_offset + current
        follower = self.follower.take(where)
        self._pending = (where, follower, follower == tab.no_code)
        return tab.induction_base.take(current) + follower

    @property
    def bucket_shift(self) -> int:
        """:meth:`draw`'s ``bucket`` is ``k >> bucket_shift``."""
        return self.tables.dists.shift

    def draw(self, dist: np.ndarray, k: np.ndarray, bucket: np.ndarray | None = None) -> np.ndarray:
        """Inverse-CDF draw from distribution ids: the same token as
        :func:`specs.sample.draw` on the dense row for the uniform ``k / 2**53``.

        Args:
            dist: int [B] from :meth:`step_ids`.
            k: int64 [B] in ``0..2**53-1`` (:func:`uniforms_as_ints`).
            bucket: ``k >> self.bucket_shift`` if precomputed (optional).
        """
        return self.tables.dists.draw(dist, k, bucket)

    def step(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distribution of ``x[t+1]`` for every row, then advance ``t``.

        Args:
            tokens: int64 [B, T] with columns ``0..t`` filled (column 0 is BOS).

        Returns:
            probs float64 [B, V] and the firing rule ids int64 [B].
        """
        dist, rule = self.step_ids(tokens)
        return self.tables.dists.dense_rows(dist), rule.astype(np.int64, copy=False)
