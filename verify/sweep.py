"""The breadth phase of a search: distinct items drawn with numpy, and a batched shrinker.

Hypothesis spends tens of primitive choices and one pass of its engine on every batch it
proposes (a few milliseconds per test case here), and most of what its target and
shrink phases propose are repeats: its strength is steering and shrinking, not volume.
After the Hypothesis phases of :func:`verify.search.search` pass, a :class:`Sweep`
checks many more items, drawn here in bulk:

* contexts where a rule fires, of every length up to ``max_len``: half prefixes of
  planted sequences (:mod:`specs.nearmiss`: the rule's endings, and every rule's
  boundary contexts, written at random positions), half in-distribution (prefixes of
  ``max_len``-token sequences sampled from the spec, cut where the rule fires); without
  a rule, random sequences and sampled prefixes. Several contexts come from one
  sequence, so the model runs it once for all of them (:func:`verify.batched.shared`);
* contexts whose last token occurred before (``p + s + s``), window pairs and
  counterfactual pairs, under the same conditions as the strategies of
  :mod:`verify.strategies`.

Hypothesis has no public way to start its shrinker from an outside example, so a
failure found by a sweep is shrunk by :func:`shrink`, greedily and in batches, towards
the same order Hypothesis uses: shorter first, then fewer distinct tokens, then smaller
token ids.

Items are contexts (token-id lists after BOS) or pairs of contexts of equal length
(tuples), as the strategies draw them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from specs.model import Spec
from specs.nearmiss import boundary_endings, ending, planted
from specs.sample import sample
from specs.truth import truth
from verify.strategies import boundary_pools, fired

Draw = Callable[[np.random.Generator, int], list]  # (rng, n) -> up to n items
Fails = Callable[[list], np.ndarray]  # a batch of items -> bool [N]


@dataclass(frozen=True)
class Sweep:
    """Items for the breadth phase.

    Attributes:
        draw: ``(rng, n)`` -> up to ``n`` items, every one satisfying ``valid``.
        valid: whether an item is one the claim is about (a shrink candidate must be).
        alphabet: token ids are ``0..alphabet-1`` (the spec's vocabulary): lets
            :func:`shrink` try every shorter context when there are few enough.
    """

    draw: Draw
    valid: Callable[[Any], bool]
    alphabet: int = 0


PER_SEQUENCE = 16  # contexts taken from one planted or sampled sequence (at most)
PLANTED = 16  # sequences planted at once


def rule_contexts(spec: Spec, rule: str | None, rng: np.random.Generator, n: int) -> list:
    """About ``n`` contexts where ``rule`` fires (``None``: any context), of every length
    up to ``max_len``.

    Up to half are prefixes of sequences sampled from the spec, from at most
    ``n / (2 PER_SEQUENCE)`` sequences (the model runs each once; a rare rule gets few
    from them); the rest are prefixes of planted sequences (:func:`planted_contexts`:
    the rule's own endings, and the boundary contexts of every rule, at random
    positions). A rule too rare to build (shadowed) gets what the sampling finds.
    """
    if rule == "start":
        return []  # its one context, the empty one, is Hypothesis' first draw
    most = max(1, n // (2 * PER_SEQUENCE))
    sampled = sampled_contexts(spec, rule, rng, n // 2, sequences=most)
    return planted_contexts(spec, rule, rng, n - len(sampled)) + sampled


def planted_contexts(spec: Spec, rule: str | None, rng: np.random.Generator, n: int) -> list:
    """Up to ``n`` prefixes, ending where ``rule`` fires, of random ``max_len``-token
    sequences into which endings were written at random positions
    (:func:`specs.nearmiss.planted`): in turn the rule's own endings and the boundary
    endings of every rule at which it fires (:func:`verify.strategies.boundary_pools`;
    any rule: all of them). Each sequence gives at most ``PER_SEQUENCE`` contexts, the
    planted end positions first; the model runs each sequence once for all of them."""
    want = None if rule is None else spec.rule_names().index(rule)
    own = None if want is None else spec.rules[want]
    pool = [list(e) for e in boundary_pools(spec)[rule]] if rule else []
    sources = [lambda r: [ending(spec, own, r) for _ in range(PER_SEQUENCE)]] if own else []
    if pool or rule is None:  # boundary endings at which the rule fires (any: all of them)
        sources.append((lambda r: pool) if rule else (lambda r: boundary_endings(spec, r)))
    out: list[list[int]] = []
    for k in range(16):
        if len(out) >= n:
            break
        tokens, ends = planted(spec, rng, PLANTED, sources[k % len(sources)], PER_SEQUENCE)
        bos = np.full((len(tokens), 1), len(spec.vocab), dtype=np.int64)
        _, rule_ids = truth(spec, np.hstack([bos, tokens]))  # [B, 1 + max_len]
        for i in range(len(tokens)):
            hits = np.flatnonzero(rule_ids[i, 1:] >= 0 if want is None else rule_ids[i, 1:] == want)
            fires = set((hits + 1).tolist())  # context lengths at which the rule fires
            chosen = [p for p in dict.fromkeys(ends[i]) if p in fires]
            rest = rng.permutation(hits + 1)[: max(0, PER_SEQUENCE - len(chosen))]
            out += [tokens[i, :p].tolist() for p in [*chosen, *rest.tolist()][:PER_SEQUENCE]]
    return out[:n]


def sampled_contexts(
    spec: Spec,
    rule: str | None,
    rng: np.random.Generator,
    n: int,
    length: int | None = None,
    batches: int = 16,
    sequences: int | None = None,
) -> list:
    """Up to ``n`` prefixes of sequences sampled from the spec (``length`` tokens, default
    and at most ``spec.max_len``) after which ``rule`` fires (any rule when ``None``).

    Samples up to ``batches`` batches of 64 sequences, taking up to ``PER_SEQUENCE``
    random hits from each sequence in turn until ``n`` are found: rare rules get as many
    contexts as the budget allows, and a shadowed rule does not stall. ``sequences``
    caps the sequences taken from (each costs the model one pass).
    """
    want = None if rule is None else spec.rule_names().index(rule)
    length = spec.max_len if length is None else min(spec.max_len, length)
    out: list[list[int]] = []
    left = math.inf if sequences is None else sequences
    for _ in range(batches):
        if len(out) >= n or left <= 0:
            break
        seed = int(rng.integers(2**31))
        tokens, rule_ids = sample(spec, 64, length, seed)
        for b in rng.permutation(len(tokens)):  # few sequences: each runs once for all
            hits = np.flatnonzero(rule_ids[b] >= 0 if want is None else rule_ids[b] == want)
            ends = rng.permutation(hits)[: min(PER_SEQUENCE, n - len(out))]
            out += [tokens[b, 1 : t + 1].tolist() for t in ends.tolist()]
            left -= len(ends) > 0
            if len(out) >= n or left <= 0:
                break
    return out


def contexts_sweep(spec: Spec, rule: str | None, keep: Callable[[list], bool]) -> Sweep:
    """Contexts where ``rule`` fires (any when ``None``) and ``keep`` holds."""

    def valid(ctx) -> bool:
        return (rule is None or fired(spec, ctx) == rule) and keep(ctx)

    def draw(rng, n):
        return [c for c in rule_contexts(spec, rule, rng, n) if keep(c)]

    return Sweep(draw, valid, len(spec.vocab))


def repeated_sweep(spec: Spec, rule: str | None) -> Sweep:
    """Contexts whose last token occurred before, where ``rule`` fires when one is given:
    prefixes ending inside the second copy of ``p + s + s`` (a random prefix ``p``, a
    random ``s``), so both copies sit at early and at late positions."""

    def valid(ctx) -> bool:
        ok = len(ctx) >= 2 and ctx[-1] in ctx[:-1]
        return ok and (rule is None or fired(spec, ctx) == rule)

    def draw(rng, n):
        out: list[list[int]] = []
        for _ in range(4 * max(1, n // PER_SEQUENCE)):
            if len(out) >= n:
                break
            half = int(rng.integers(1, spec.max_len // 2 + 1))
            lead = int(rng.integers(0, spec.max_len - 2 * half + 1))
            s = rng.integers(0, len(spec.vocab), size=half).tolist()
            seq = rng.integers(0, len(spec.vocab), size=lead).tolist() + s + s
            ends = rng.permutation(np.arange(lead + half + 1, len(seq) + 1))[:PER_SEQUENCE]
            out += [c for c in (seq[:p] for p in ends.tolist()) if valid(c)]
        return out[:n]

    return Sweep(draw, valid, len(spec.vocab))


def window_sweep(spec: Spec, rule: str, window: int) -> Sweep:
    """Pairs ``(ctx, other)`` where ``rule`` fires in both, equal in their last
    ``window + 1`` tokens and differing in at least one token before those."""
    near = window + 1

    def valid(pair) -> bool:
        a, b = pair
        far = len(a) - near
        return (
            len(a) == len(b)
            and far >= 1
            and a[far:] == b[far:]
            and a[:far] != b[:far]
            and fired(spec, a) == fired(spec, b) == rule
        )

    def draw(rng, n):
        out = []
        for ctx in rule_contexts(spec, rule, rng, n):
            far = len(ctx) - near
            if far < 1:
                continue
            new = rng.integers(0, len(spec.vocab), size=far).tolist()
            if new == ctx[:far]:
                new[-1] = (new[-1] + 1) % len(spec.vocab)
            pair = (ctx, new + ctx[far:])
            if fired(spec, pair[1]) == rule:
                out.append(pair)
        return out

    return Sweep(draw, valid)


def counterfactual_sweep(spec: Spec, category: str, rule: str) -> Sweep:
    """Pairs ``(ctx, ctx2)`` where ``rule`` fires in both and ctx2 swaps at least one
    token of ``category`` for another token of the same category, nothing else."""
    members = spec.vocab.resolve(category)
    others = {t: sorted(members - {t}) for t in members}

    def valid(pair) -> bool:
        a, b = pair
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y]
        return (
            len(a) == len(b)
            and bool(diff)
            and all(a[i] in members and b[i] in members for i in diff)
            and fired(spec, a) == fired(spec, b) == rule
        )

    def draw(rng, n):
        out = []
        for ctx in rule_contexts(spec, rule, rng, n):
            slots = [i for i, t in enumerate(ctx) if t in members]
            if not slots:
                continue
            chosen = [i for i in slots if rng.random() < 0.5] or [slots[-1]]
            other = list(ctx)
            for i in chosen:
                other[i] = int(rng.choice(others[ctx[i]]))
            if fired(spec, other) == rule:
                out.append((ctx, other))
        return out

    return Sweep(draw, valid)


BRUTE = 4096  # the most contexts shrink() enumerates to prove a counterexample shortest
LONG = 24  # above this length, shrink() tries only the cheapest edits of each kind
MAX_SHRINK = 3000  # candidates shrink() scores at most (then: a local minimum, said so)


def shrink(
    item: Any, fails: Fails, valid: Callable[[Any], bool], alphabet: int = 0
) -> tuple[Any, int]:
    """A minimal failing item reached from ``item`` by edits, and the number of
    candidates scored.

    Three passes, cheapest first, each scoring all its valid edits of the current item
    in one batch: shorter (drop a prefix, delete one position or, up to ``LONG`` tokens,
    any run of positions), merged (every occurrence of one token replaced by a smaller
    token the item uses, or by id 0), lowered (one position lowered likewise; above
    ``LONG`` tokens only to 0 and to the smallest token used). The smallest failing
    candidate in the order (length, distinct tokens, token ids) replaces the item and
    the passes start again; it stops when no pass finds a smaller one (shorter edits are
    skipped while the length is one at which none failed, and tried once more before
    stopping), or after ``MAX_SHRINK`` candidates: a long counterexample may then stay a
    local minimum. A pair is edited position by position: a position both contexts
    share is deleted or lowered in both, a position where they differ in each context
    alone.

    Greedy edits stop at a *local* minimum. So, for a single context and a known
    ``alphabet``, :func:`exhaustive` then tries every valid context of each shorter
    length (and of the same length) while there are at most ``BRUTE`` of them: the
    result is then the smallest failing context in the shrink order, not only a local
    minimum.
    """
    pair = isinstance(item, tuple)
    parts = [list(p) for p in (item if pair else (item,))]

    def made(ps: list[list[int]]):
        return tuple(ps) if pair else ps[0]

    scored = 0
    short_failed_at = -1  # the length at which no shorter edit failed (skip until stuck)
    improved = True
    while improved and scored < MAX_SHRINK:
        improved = False
        for edits in (_shorter, _merged, _lowered):
            if edits is _shorter and short_failed_at == len(parts[0]):
                continue
            cands = [c for c in edits(parts) if _key(c) < _key(parts) and valid(made(c))]
            scored += len(cands)
            failing = fails([made(c) for c in cands]) if cands else np.zeros(0, bool)
            better = [c for c, f in zip(cands, failing, strict=True) if f]
            if not better and edits is _shorter:
                short_failed_at = len(parts[0])
            if better:
                parts, improved = min(better, key=_key), True
                combined = _combined(parts, better)  # every lowering at once, if it fails
                if _key(combined) < _key(parts) and valid(made(combined)):
                    scored += 1
                    if fails([made(combined)])[0]:
                        parts = combined
                break
        if not improved and short_failed_at == len(parts[0]) and short_failed_at >= 0:
            short_failed_at = -1  # tokens changed since: shorter edits once more
            cands = [c for c in _shorter(parts) if valid(made(c))]
            scored += len(cands)
            failing = fails([made(c) for c in cands]) if cands else np.zeros(0, bool)
            better = [c for c, f in zip(cands, failing, strict=True) if f]
            if better:
                parts, improved = min(better, key=_key), True
    if pair or not alphabet:
        return made(parts), scored
    best, tried = exhaustive(parts[0], fails, valid, alphabet)
    return best, scored + tried


def exhaustive(ctx: list[int], fails: Fails, valid, alphabet: int) -> tuple[list[int], int]:
    """The smallest failing context (shrink order) among every valid context no longer
    than ``ctx``, enumerated length by length while the next length has at most
    ``BRUTE`` contexts in all; ``ctx`` itself when the enumeration stops before finding
    one smaller. Returns it and the number of candidates scored."""
    tried, budget = 0, BRUTE
    for k in range(len(ctx) + 1):
        count = alphabet**k
        if count > budget:
            return ctx, tried
        budget -= count
        cands = [list(c) for c in itertools.product(range(alphabet), repeat=k)]
        cands = [c for c in cands if valid(c)]
        tried += len(cands)
        failing = fails(cands) if cands else np.zeros(0, bool)
        bad = [c for c, f in zip(cands, failing, strict=True) if f]
        if bad:
            best = min(bad, key=lambda c: _key([c]))
            return (best if _key([best]) < _key([ctx]) else ctx), tried
    return ctx, tried


def _key(parts: list[list[int]]) -> tuple:
    """Shrink order: shorter, then fewer distinct tokens, then smaller ids."""
    return (len(parts[0]), len(set().union(*parts)), [t for p in parts for t in p])


def _shorter(parts: list[list[int]]) -> Iterator[list[list[int]]]:
    """Every prefix dropped, every single position deleted (from all parts); up to
    ``LONG`` tokens, every run of two or more positions deleted too."""
    n = len(parts[0])
    for k in range(1, n + 1):
        yield [p[k:] for p in parts]
    for i in range(n):
        yield [p[:i] + p[i + 1 :] for p in parts]
    if n <= LONG:
        for i in range(n):
            for j in range(i + 2, n + 1):
                yield [p[:i] + p[j:] for p in parts]


def _merged(parts: list[list[int]]) -> Iterator[list[list[int]]]:
    """Every occurrence of one token replaced by a smaller used token (or 0; above
    ``LONG`` tokens, only by 0 or the smallest token used)."""
    used = sorted({0}.union(*parts))
    targets = used if len(parts[0]) <= LONG else used[:2]
    for u in used:
        for t in targets:
            if t < u:
                yield [[t if x == u else x for x in p] for p in parts]


def _lowered(parts: list[list[int]]) -> Iterator[list[list[int]]]:
    """One position lowered to a smaller used token (or 0): in every part where they
    agree there, in one part where they differ."""
    used = sorted({0}.union(*parts))
    targets = used if len(parts[0]) <= LONG else used[:2]
    for i in range(len(parts[0])):
        column = {p[i] for p in parts}
        groups = [range(len(parts))] if len(column) == 1 else [[j] for j in range(len(parts))]
        for group in groups:
            for t in targets:
                if t < parts[group[0]][i]:
                    yield [_put(p, i, t) if j in group else p for j, p in enumerate(parts)]


def _combined(base: list[list[int]], edits: list[list[list[int]]]) -> list[list[int]]:
    """``base`` with each edit's changed positions applied (the smallest token wins);
    edits of other lengths are ignored."""
    out = [list(p) for p in base]
    for e in edits:
        if len(e[0]) == len(base[0]):
            for p, q in zip(out, e, strict=True):
                for i, t in enumerate(q):
                    p[i] = min(p[i], t)
    return out


def _put(ctx: list[int], i: int, t: int) -> list[int]:
    return ctx[:i] + [t] + ctx[i + 1 :]
