"""The ``skip_bigram`` kind: ``x[t] in cue`` and an anchor ``lo..hi`` positions back -> ``next``.

YAML: ``skip_bigram: {anchor, cue, window: [lo, hi], next}`` with ``1 <= lo <= hi <
max_len``. It fires at ``t`` when ``x[t] in cue`` and some ``s >= 1`` with ``lo <= t - s
<= hi`` has ``x[s] in anchor`` (BOS is never an anchor). The engine keeps, per rule and
row, the last ``t`` at which the window still holds an anchor: ``s + hi`` for the
latest anchor position ``s <= t - lo``, updated with the one position entering the
window at each step; the rule holds iff ``x[t]`` is a cue and that value is ``>= t``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import StrictInt

from specs.core import Dist, Vocab
from specs.errors import CraftError
from specs.fields import NextMap, Selector, Strict
from specs.kinds.base import (
    DistIds,
    Kind,
    Part,
    compact,
    dist_data,
    filler,
    kin,
    pick,
    token_list,
)
from specs.names import NameResolver, items
from specs.yamlpath import YamlPath, where

if TYPE_CHECKING:
    from specs.model import Spec


@dataclass(frozen=True)
class SkipBigram:
    """``x[t] in cue`` and some ``x[s] in anchor`` with ``lo <= t - s <= hi``, ``s >= 1``."""

    name: str
    anchor: frozenset[int]
    cue: frozenset[int]
    window: tuple[int, int]  # (lo, hi), 1 <= lo <= hi < max_len
    next: Dist


class SkipBigramFile(Strict):
    """``skip_bigram: {anchor, cue, window: [lo, hi], next: {...}}``."""

    anchor: Selector
    cue: Selector
    window: list[StrictInt]
    next: NextMap


class _Part(Part):
    """The skip-bigrams stacked in priority order, rule-major ([S, ...]) for fast
    reductions over rules."""

    def __init__(self, rules: Sequence[tuple[int, SkipBigram]], dists: DistIds, vocab_size: int):
        lo = np.array([r.window[0] for _, r in rules], dtype=np.int64)
        self.lo, self.same_lo = lo, bool((lo == lo[0]).all())
        hi = np.array([r.window[1] for _, r in rules], dtype=np.int64)[:, None]
        self.hi = int(hi[0, 0]) if (hi == hi[0, 0]).all() else hi
        self.anchor = np.zeros((len(rules), vocab_size + 1), dtype=bool)
        self.cue = np.zeros((len(rules), vocab_size + 1), dtype=bool)
        for j, (_, rule) in enumerate(rules):
            self.anchor[j, sorted(rule.anchor)] = True
            self.cue[j, sorted(rule.cue)] = True
        self.rule_ids = np.array([rule_id for rule_id, _ in rules], dtype=np.int64)[:, None]
        self.dist_ids = np.array([dists.id(r.next) for _, r in rules], dtype=np.int64)[:, None]
        self.rows = np.arange(len(rules))[:, None]

    def finish(self, width: int, no_code: int) -> None:
        codes = self.rule_ids * width + self.dist_ids
        self.cue_code = compact(np.where(self.cue, codes, no_code))  # [S, V + 1]
        self.no_code = no_code

    def start(self, batch: int, length: int) -> _State:
        return _State(self, batch).step


class _State:
    def __init__(self, part: _Part, batch: int):
        self.part = part
        # until[j, b]: last t at which an anchor seen so far is in rule j's window
        self.until = np.full((len(part.rows), batch), -1, dtype=np.int64)

    def step(self, tokens: np.ndarray, t: int, current: np.ndarray) -> np.ndarray:
        """Packed code of the first firing skip-bigram per row (``no_code`` when none)."""
        part, until = self.part, self.until
        if part.same_lo:
            s = t - int(part.lo[0])  # the anchor position entering the window
            if s >= 1:  # an anchor at s keeps its rule's window open until t = s + hi
                np.copyto(until, s + part.hi, where=part.anchor.take(tokens[:, s], axis=1))
        else:
            s = t - part.lo
            entering = tokens[:, np.maximum(s, 0)].T  # [S, B]; column 0 (BOS): no anchor
            hit = part.anchor[part.rows, entering]
            np.copyto(until, s[:, None] + part.hi, where=hit)
        cue_code = part.cue_code.take(current, axis=1)
        return np.where(until >= t, cue_code, part.no_code).min(axis=0)


class SkipBigramKind(Kind):
    key = "skip_bigram"
    rule_class = SkipBigram
    schema = SkipBigramFile

    def resolve(
        self, name: str, body: SkipBigramFile, names: NameResolver, path: YamlPath, max_len: int
    ) -> SkipBigram:
        window = body.window
        fix = f"write `window: [lo, hi]` with 1 <= lo <= hi < max_len ({max_len})"
        if len(window) != 2:
            raise CraftError(
                f"`window` has {items(len(window))}, expected 2",
                where=where(names.source, path / "window"),
                fix=fix,
            )
        lo, hi = window
        if not 1 <= lo <= hi < max_len:
            raise CraftError(
                f"window [{lo}, {hi}] is out of range",
                where=where(names.source, path / "window"),
                fix=fix,
            )
        anchor = names.selector(body.anchor, path / "anchor")
        cue = names.selector(body.cue, path / "cue")
        return SkipBigram(name, anchor, cue, (lo, hi), names.dist(body.next, path / "next"))

    def to_data(self, rule: SkipBigram, vocab: Vocab) -> dict[str, Any]:
        return {
            "anchor": token_list(vocab, rule.anchor),
            "cue": token_list(vocab, rule.cue),
            "window": list(rule.window),
            "next": dist_data(vocab, rule.next),
        }

    def cues(self, rule: SkipBigram) -> frozenset[int]:
        return rule.cue

    def covers(self, earlier: SkipBigram, rule: SkipBigram) -> bool:
        (lo, hi), (lo_e, hi_e) = rule.window, earlier.window
        return (
            rule.anchor <= earlier.anchor and rule.cue <= earlier.cue and lo_e <= lo <= hi <= hi_e
        )

    def exact(self, rule: SkipBigram, x: Sequence[int], vocab_size: int) -> Dist | None:
        t = len(x) - 1
        lo, hi = rule.window
        anchors = range(max(1, t - hi), t - lo + 1)
        if x[t] in rule.cue and any(x[s] in rule.anchor for s in anchors):
            return rule.next
        return None

    def compile(
        self, rules: Sequence[tuple[int, SkipBigram]], dists: DistIds, vocab_size: int
    ) -> Part:
        return _Part(rules, dists, vocab_size)

    def targeted_ending(self, spec: Spec, rule: SkipBigram, rng: np.random.Generator) -> list[int]:
        gap = int(rng.integers(rule.window[0], rule.window[1] + 1))
        between = rng.integers(0, len(spec.vocab), size=gap - 1).tolist()
        return [pick(rng, rule.anchor), *between, pick(rng, rule.cue)]

    def ending(self, spec: Spec, rule: SkipBigram, rng: np.random.Generator) -> list[int]:
        """Anchor, gap (any distance in the window), cue."""
        gap = int(rng.integers(rule.window[0], rule.window[1] + 1))
        return [
            pick(rng, rule.anchor),
            *filler(spec, rng, gap - 1, frozenset()),
            pick(rng, rule.cue),
        ]

    def near_endings(
        self, spec: Spec, rule: SkipBigram, rng: np.random.Generator
    ) -> list[list[int]]:
        """The anchor at distance ``lo - 1`` and ``hi + 1`` (outside) and at ``lo`` and
        ``hi`` (the edges inside), the gap free of anchors; the cue or the anchor
        replaced by another token of its category."""
        lo, hi = rule.window
        anchor, cue = pick(rng, rule.anchor), pick(rng, rule.cue)

        def at(distance: int, a: int = anchor, c: int = cue) -> list[int]:
            return [a, *filler(spec, rng, distance - 1, rule.anchor), c]

        out = [at(d) for d in (lo - 1, lo, hi, hi + 1) if 1 <= d < spec.max_len]
        inside = int(rng.integers(lo, hi + 1))
        kin_cue, kin_anchor = kin(spec, rule.cue), kin(spec, rule.anchor)
        if kin_cue:
            out.append(at(inside, c=pick(rng, kin_cue)))
        if kin_anchor:
            out.append(at(inside, a=pick(rng, kin_anchor)))
        return out

    def overlay(
        self, spec: Spec, rule: SkipBigram, ctx: list[int], rng: np.random.Generator
    ) -> list[int] | None:
        out = list(ctx)
        if out[-1] not in rule.cue:
            return None
        d = int(rng.integers(rule.window[0], rule.window[1] + 1))
        if len(out) <= d:
            out = filler(spec, rng, d + 1 - len(out), frozenset()) + out
        out[-1 - d] = pick(rng, rule.anchor)
        return out


KIND = SkipBigramKind()
