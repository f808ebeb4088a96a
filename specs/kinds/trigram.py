"""The ``trigram`` kind: ``t >= 2``, ``x[t-1] in first`` and ``x[t] in second`` -> ``next``.

YAML: ``trigram: {after: [first, second], next: {...}}``. BOS never matches ``first``
(not even ``"*"``), so a trigram cannot fire at ``t = 1``. In the engine it is a
*local* part: previous tokens are grouped into classes by their membership in the
trigrams' ``first`` sets, and a ``[class, x[t]]`` table gives the first trigram that
fires (merged with the bigrams' row into one lookup).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from specs.core import Dist, Vocab
from specs.errors import CraftError
from specs.fields import NextMap, Selector, Strict
from specs.kinds.base import DistIds, Kind, Part, dist_data, filler, kin, pick, token_list
from specs.names import NameResolver, items
from specs.yamlpath import YamlPath, where

if TYPE_CHECKING:
    from specs.model import Spec


@dataclass(frozen=True)
class Trigram:
    """``x[t-1] in first`` and ``x[t] in second`` (t >= 2, BOS never matches) -> ``next``."""

    name: str
    first: frozenset[int]
    second: frozenset[int]
    next: Dist


class TrigramFile(Strict):
    """``trigram: {after: [first, second], next: {...}}``."""

    after: list[Selector]
    next: NextMap


class _Part(Part):
    """``[first class, x[t]]`` -> the first trigram firing there."""

    def __init__(self, rules: Sequence[tuple[int, Trigram]], dists: DistIds, vocab_size: int):
        n = len(rules)
        self.rule_ids = [rule_id for rule_id, _ in rules]
        self.dist_ids = [dists.id(rule.next) for _, rule in rules]
        first = np.zeros((vocab_size + 1, n), dtype=bool)
        second = np.zeros((vocab_size + 1, n), dtype=bool)
        for i, (_, rule) in enumerate(rules):
            first[sorted(rule.first), i] = True
            second[sorted(rule.second), i] = True
        first_sets, prev_class = np.unique(first, axis=0, return_inverse=True)
        second_sets, cur_class = np.unique(second, axis=0, return_inverse=True)
        self.prev_class, self.cur_class = prev_class.reshape(-1), cur_class.reshape(-1)
        self.by_class = np.full((len(first_sets), len(second_sets)), n, dtype=np.int64)
        for i in reversed(range(n)):  # the first trigram written last
            self.by_class[np.ix_(first_sets[:, i], second_sets[:, i])] = i

    def finish(self, width: int, no_code: int) -> None:
        codes = [r * width + d for r, d in zip(self.rule_ids, self.dist_ids, strict=True)]
        code_of = np.array([*codes, no_code], dtype=np.int64)  # index n: none fires
        self.codes = code_of[self.by_class][:, self.cur_class]  # [first classes, V + 1]

    def local(self) -> tuple[np.ndarray, np.ndarray]:
        return self.prev_class, self.codes


class TrigramKind(Kind):
    key = "trigram"
    rule_class = Trigram
    schema = TrigramFile

    def resolve(
        self, name: str, body: TrigramFile, names: NameResolver, path: YamlPath, max_len: int
    ) -> Trigram:
        if len(body.after) != 2:
            raise CraftError(
                f"`after` has {items(len(body.after))}, expected 2",
                where=where(names.source, path / "after"),
                fix="write `after: [first, second]` (the two tokens before the prediction)",
            )
        first = names.selector(body.after[0], path / "after" / 0)
        second = names.selector(body.after[1], path / "after" / 1)
        return Trigram(name, first, second, names.dist(body.next, path / "next"))

    def to_data(self, rule: Trigram, vocab: Vocab) -> dict[str, Any]:
        return {
            "after": [token_list(vocab, rule.first), token_list(vocab, rule.second)],
            "next": dist_data(vocab, rule.next),
        }

    def cues(self, rule: Trigram) -> frozenset[int]:
        return rule.second

    def covers(self, earlier: Trigram, rule: Trigram) -> bool:
        return rule.first <= earlier.first and rule.second <= earlier.second

    def exact(self, rule: Trigram, x: Sequence[int], vocab_size: int) -> Dist | None:
        t = len(x) - 1
        if t >= 2 and x[t - 1] in rule.first and x[t] in rule.second:
            return rule.next
        return None

    def compile(
        self, rules: Sequence[tuple[int, Trigram]], dists: DistIds, vocab_size: int
    ) -> Part:
        return _Part(rules, dists, vocab_size)

    def targeted_ending(self, spec: Spec, rule: Trigram, rng: np.random.Generator) -> list[int]:
        return [pick(rng, rule.first), pick(rng, rule.second)]

    def ending(self, spec: Spec, rule: Trigram, rng: np.random.Generator) -> list[int]:
        return [pick(rng, rule.first), pick(rng, rule.second)]

    def near_endings(self, spec: Spec, rule: Trigram, rng: np.random.Generator) -> list[list[int]]:
        """First or second token replaced by another of its category, one token between
        the pair, the second token alone right after BOS."""
        a, b = pick(rng, rule.first), pick(rng, rule.second)
        out = [[a, *filler(spec, rng, 1, rule.first), b], [b]]
        kin_a, kin_b = kin(spec, rule.first), kin(spec, rule.second)
        if kin_a:
            out.append([pick(rng, kin_a), b])
        if kin_b:
            out.append([a, pick(rng, kin_b)])
        return out

    def overlay(
        self, spec: Spec, rule: Trigram, ctx: list[int], rng: np.random.Generator
    ) -> list[int] | None:
        last = ctx[-1]
        if last not in rule.second:
            return None
        return [*ctx[:-2], pick(rng, rule.first), last]


KIND = TrigramKind()
