"""Batched evaluation of a spec's rules, one position at a time (numpy, float64).

This is the vectorised twin of :func:`specs.truth.next_dist_exact` (which is pure
Python over exact fractions and serves as its oracle in the tests). :func:`specs.truth.truth`
runs it over given tokens; :func:`specs.sample.sample` runs it while drawing tokens.

The rules are compiled once per spec (:func:`compiled`, cached) into lookup tables, so
that one position costs a fixed, small number of numpy operations whatever the number
of rules (no per-rule loop, no data-dependent branches). Each rule kind compiles all
its rules into one *part* (:meth:`specs.kinds.base.Kind.compile`, in the kind's
module):

* **local parts** (bigram, trigram) depend only on ``(x[t-1], x[t])``; they are merged
  into one table ``[prev class, x[t]]`` giving the first local rule that fires and its
  distribution. Previous tokens are grouped into classes by what the parts need of
  them (one class when only bigrams are local), so the table is small;
* **stateful parts** (skip-bigram, induction, bracket, copy) keep per-row state over
  the positions already seen (the window's anchors, the first occurrences' followers,
  the bracket stack; copy reads a column of the tokens) and give, at each position,
  their best candidate;
* the firing rule is the smallest rule id among these (ids are priorities). Each
  candidate is packed as ``code = rule id * D + distribution id`` (``D`` distributions),
  so one elementwise ``minimum`` picks both, and ``divmod`` unpacks them.

Every distribution a rule can give (deduplicated, plus the one-hot of every token for
the kinds that copy a token) has an id; :meth:`Evaluator.draw` draws from ids by
inverse CDF with exactly the arithmetic of :func:`specs.sample.draw` (the same token
for the same uniform).

Shape glossary: ``B`` batch, ``T`` columns of a token array (BOS at column 0, token
``x[t]`` at column ``t``), ``V`` vocabulary size; index ``V`` (BOS) is added to every
per-token table so that tables can be indexed by any column and BOS never matches.
"""

from __future__ import annotations

import weakref

import numpy as np

from specs.errors import CraftError
from specs.kinds import KINDS, kind_of
from specs.kinds.base import Part, Step, compact
from specs.model import Dist, Spec

_TWO53 = float(2**53)  # numpy's float64 uniforms are k / 2**53, k in 0..2**53-1
_GUIDE_LIMIT = 1 << 21  # entries of the guide table (distributions x buckets)
_GUIDE_BITS = 10  # at most 1024 buckets per distribution
_LINEAR_STEPS = 4  # up to this many entries per bucket, step; beyond, bisect
_DENSE_LIMIT = 1 << 22  # entries of the dense [dists, V] table kept for truth()


def uniforms_as_ints(uniforms: np.ndarray) -> np.ndarray:
    """float64 uniforms of numpy's Generator (``k / 2**53``) -> the integers ``k``."""
    return (np.asarray(uniforms, dtype=np.float64) * _TWO53).astype(np.int64)


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
        big = len(spec.rules) + 1  # "no rule": larger than every rule id and the start id
        self.vocab, self.vocab_size, self.big = spec.vocab, v, big
        self.start_rule_id = spec.start_rule_id
        self.max_len = spec.max_len
        dists = _Dists(v)
        self.start_dist = dists.id(spec.start)
        kinds = [kind_of(rule) for rule in spec.rules]
        parts: list[Part] = []
        for kind in KINDS:
            mine = [(i, rule) for i, rule in enumerate(spec.rules) if kinds[i] is kind]
            if mine:
                parts.append(kind.compile(mine, dists, v))
        dists.freeze()
        self.dists = dists
        width = len(dists.lens)  # D: packed code = rule id * D + distribution id
        self.code_width, self.no_code = width, big * width  # no_code: "no rule fires"
        for part in parts:
            part.finish(width, self.no_code)
        covered = frozenset().union(*(kind_of(r).unconditional(r) for r in spec.rules))
        self.covered = len(covered) == v  # every context has a rule
        tables = [(part, part.local()) for part in parts]
        local = [table for _, table in tables if table is not None]
        prev_class, codes = _merge_local(local, v, self.no_code)
        self.prev_offset = prev_class * (v + 1)  # flat row offset of each previous token
        self.local_code = compact(codes).reshape(-1)
        self.stateful = tuple(part for part, table in tables if table is None)


def _merge_local(
    tables: list[tuple[np.ndarray, np.ndarray]], vocab_size: int, no_code: int
) -> tuple[np.ndarray, np.ndarray]:
    """One ``(prev_class [V + 1], codes [C, V + 1])`` table for all local parts: a class
    per distinct combination of the parts' classes, the smallest code of the parts."""
    if not tables:
        return np.zeros(vocab_size + 1, dtype=np.int64), np.full((1, vocab_size + 1), no_code)
    classes = np.stack([prev for prev, _ in tables], axis=1)  # [V + 1, parts]
    combos, prev_class = np.unique(classes, axis=0, return_inverse=True)
    codes = np.full((len(combos), vocab_size + 1), no_code, dtype=np.int64)
    for j, (_, part_codes) in enumerate(tables):
        np.minimum(codes, part_codes[combos[:, j]], out=codes)
    return prev_class.reshape(-1).astype(np.int64), codes


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

    Call :meth:`step` (or :meth:`step_ids`) for ``t = 0, 1, 2, ...`` in order; the
    stateful parts keep, per row, what they need of the positions already seen (until
    when each skip-bigram's window holds an anchor, what followed the first occurrence
    of every token, ...), so one pass is ``O(B T)`` numpy work with a fixed number of
    operations per position.
    """

    def __init__(self, spec: Spec, batch: int, length: int | None = None):
        """``length``: the most tokens after BOS this evaluator will see (default
        ``spec.max_len``); it sizes per-row state such as bracket stacks."""
        tab = compiled(spec)
        self.tables = tab
        self.vocab_size = tab.vocab_size
        self.batch = batch
        self.t = 0
        length = tab.max_len if length is None else length
        steps = (part.start(batch, length) for part in tab.stateful)
        self._steps: tuple[Step, ...] = tuple(step for step in steps if step is not None)

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
        for step in self._steps:
            code = np.minimum(code, step(tokens, t, current))
        rule, dist = np.divmod(code, tab.code_width)
        if not tab.covered and (rule >= tab.big).any():
            row = int(np.argmax(rule >= tab.big))
            raise CraftError(
                f"no rule covers the context {tab.vocab.decode(tokens[row, : t + 1])}",
                where="spec rules",
                fix='add a fallback bigram with a "*" key as the last rule',
            )
        return dist, rule

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
