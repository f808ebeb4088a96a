"""The breadth phase of a search: distinct items drawn with numpy, and a batched shrinker.

Hypothesis spends tens of primitive choices and one pass of its engine on every batch it
proposes (a few milliseconds per test case here), and most of what its target and
shrink phases propose are repeats: its strength is steering and shrinking, not volume.
After the Hypothesis phases of :func:`verify.search.search` pass, a :class:`Sweep`
checks many more items, drawn here in bulk:

* contexts where a rule fires: half built (:func:`specs.targeted.contexts_for_rule`: a
  random prefix, then the rule's ending), half in-distribution (prefixes of sequences
  sampled from the spec, cut where the rule fires); without a rule, uniformly random
  strings and sampled prefixes;
* repeated sequences ``s + s``, window pairs and counterfactual pairs, under the same
  conditions as the strategies of :mod:`verify.strategies`.

Hypothesis has no public way to start its shrinker from an outside example, so a
failure found by a sweep is shrunk by :func:`shrink`, greedily and in batches, towards
the same order Hypothesis uses: shorter first, then fewer distinct tokens, then smaller
token ids.

Items are contexts (token-id lists after BOS) or pairs of contexts of equal length
(tuples), as the strategies draw them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from specs.errors import CraftError
from specs.model import Spec
from specs.sample import sample
from specs.targeted import contexts_for_rule
from verify.strategies import fired

Draw = Callable[[np.random.Generator, int], list]  # (rng, n) -> up to n items
Fails = Callable[[list], np.ndarray]  # a batch of items -> bool [N]

MAX_PREFIX = 24  # as verify.strategies.contexts: the longest random prefix
SAMPLED_LEN = 2 * MAX_PREFIX  # sampled sequences are this long (attention is quadratic)


@dataclass(frozen=True)
class Sweep:
    """Items for the breadth phase.

    Attributes:
        draw: ``(rng, n)`` -> up to ``n`` items, every one satisfying ``valid``.
        valid: whether an item is one the claim is about (a shrink candidate must be).
    """

    draw: Draw
    valid: Callable[[Any], bool]


def rule_contexts(spec: Spec, rule: str | None, rng: np.random.Generator, n: int) -> list:
    """About ``n`` contexts where ``rule`` fires (``None``: any context).

    Half are built to make the rule fire after a random prefix of up to ``MAX_PREFIX``
    tokens; half are prefixes of sequences sampled from the spec. A rule too rare to
    build (shadowed) gets sampled contexts only.
    """
    if rule == "start":
        return []  # its one context, the empty one, is Hypothesis' first draw
    if rule is None:
        lengths = rng.integers(0, min(MAX_PREFIX + 4, spec.max_len) + 1, size=n - n // 2)
        built = [rng.integers(0, len(spec.vocab), size=k).tolist() for k in lengths]
    else:
        try:
            rule_id = spec.rule_names().index(rule)
            built = [list(c) for c in contexts_for_rule(spec, rule_id, rng, n - n // 2)]
        except CraftError:
            built = []
    return built + sampled_contexts(spec, rule, rng, n // 2)


def sampled_contexts(
    spec: Spec,
    rule: str | None,
    rng: np.random.Generator,
    n: int,
    length: int = SAMPLED_LEN,
    batches: int = 16,
) -> list:
    """Up to ``n`` prefixes of sequences sampled from the spec (``length`` tokens, at most
    ``spec.max_len``) after which ``rule`` fires (any rule when ``None``).

    Samples up to ``batches`` batches of 64 sequences, taking a random subset of each
    batch's hits, until ``n`` are found: rare rules get as many contexts as the budget
    allows, and a shadowed rule does not stall.
    """
    want = None if rule is None else spec.rule_names().index(rule)
    out: list[list[int]] = []
    for _ in range(batches):
        if len(out) >= n:
            break
        seed = int(rng.integers(2**31))
        tokens, rule_ids = sample(spec, 64, min(spec.max_len, length), seed)
        hits = np.argwhere(rule_ids >= 0 if want is None else rule_ids == want)
        hits = hits[rng.permutation(len(hits))[: n - len(out)]]
        out += [tokens[b, 1 : t + 1].tolist() for b, t in hits]
    return out


def contexts_sweep(spec: Spec, rule: str | None, keep: Callable[[list], bool]) -> Sweep:
    """Contexts where ``rule`` fires (any when ``None``) and ``keep`` holds."""

    def valid(ctx) -> bool:
        return (rule is None or fired(spec, ctx) == rule) and keep(ctx)

    return Sweep(lambda rng, n: [c for c in rule_contexts(spec, rule, rng, n) if keep(c)], valid)


def repeated_sweep(spec: Spec, rule: str | None) -> Sweep:
    """Repeated random sequences ``s + s`` (``len(s)`` from 1 to half the context),
    where ``rule`` fires when one is given."""

    def valid(ctx) -> bool:
        half = len(ctx) // 2
        ok = half >= 1 and len(ctx) % 2 == 0 and ctx[:half] == ctx[half:]
        return ok and (rule is None or fired(spec, ctx) == rule)

    def draw(rng, n):
        lengths = rng.integers(1, spec.max_len // 2 + 1, size=n)
        halves = [rng.integers(0, len(spec.vocab), size=k).tolist() for k in lengths]
        doubled = [h + h for h in halves]
        return [c for c in doubled if rule is None or fired(spec, c) == rule]

    return Sweep(draw, valid)


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


def shrink(item: Any, fails: Fails, valid: Callable[[Any], bool]) -> tuple[Any, int]:
    """A minimal failing item reached from ``item`` by edits, and the number of
    candidates scored.

    Three passes, cheapest first, each scoring all its valid edits of the current item
    in one batch: shorter (drop a prefix, delete one position), merged (every occurrence
    of one token replaced by a smaller token the item uses, or by id 0), lowered (one
    position lowered likewise). The smallest failing candidate in the order (length,
    distinct tokens, token ids) replaces the item and the passes start again; it stops
    when no pass finds a smaller one. A pair is edited position by position: a position
    both contexts share is deleted or lowered in both, a position where they differ in
    each context alone.
    """
    pair = isinstance(item, tuple)
    parts = [list(p) for p in (item if pair else (item,))]

    def made(ps: list[list[int]]):
        return tuple(ps) if pair else ps[0]

    scored = 0
    improved = True
    while improved:
        improved = False
        for edits in (_shorter, _merged, _lowered):
            cands = [c for c in edits(parts) if _key(c) < _key(parts) and valid(made(c))]
            scored += len(cands)
            failing = fails([made(c) for c in cands]) if cands else np.zeros(0, bool)
            better = [c for c, f in zip(cands, failing, strict=True) if f]
            if better:
                parts, improved = min(better, key=_key), True
                combined = _combined(parts, better)  # every lowering at once, if it fails
                if _key(combined) < _key(parts) and valid(made(combined)):
                    scored += 1
                    if fails([made(combined)])[0]:
                        parts = combined
                break
    return made(parts), scored


def _key(parts: list[list[int]]) -> tuple:
    """Shrink order: shorter, then fewer distinct tokens, then smaller ids."""
    return (len(parts[0]), len(set().union(*parts)), [t for p in parts for t in p])


def _shorter(parts: list[list[int]]) -> Iterator[list[list[int]]]:
    """Every prefix dropped, every single position deleted (from all parts)."""
    n = len(parts[0])
    for k in range(1, n + 1):
        yield [p[k:] for p in parts]
    for i in range(n):
        yield [p[:i] + p[i + 1 :] for p in parts]


def _merged(parts: list[list[int]]) -> Iterator[list[list[int]]]:
    """Every occurrence of one token replaced by a smaller used token (or 0)."""
    used = sorted({0}.union(*parts))
    for u in used:
        for t in used:
            if t < u:
                yield [[t if x == u else x for x in p] for p in parts]


def _lowered(parts: list[list[int]]) -> Iterator[list[list[int]]]:
    """One position lowered to a smaller used token (or 0): in every part where they
    agree there, in one part where they differ."""
    used = sorted({0}.union(*parts))
    for i in range(len(parts[0])):
        column = {p[i] for p in parts}
        groups = [range(len(parts))] if len(column) == 1 else [[j] for j in range(len(parts))]
        for group in groups:
            for t in used:
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
