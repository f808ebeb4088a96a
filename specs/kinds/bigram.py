"""The ``bigram`` kind: ``x[t]`` is a key of the table -> that key's distribution.

YAML: ``bigram: {key: next, ...}``; keys are tokens, categories or ``"*"``, with the
precedence token > category > ``"*"`` inside one table, applied when resolving (the
rule stores one row per covered token). A bigram fires on ``x[t]`` whatever came
before: it is the only kind that covers contexts on its own (:meth:`Kind.unconditional`).
In the engine it is a *local* part: a ``[V + 1]`` code row merged with the trigrams'.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import StrictStr

from specs.core import Dist, Vocab
from specs.errors import CraftError
from specs.fields import NextMap
from specs.kinds.base import DistIds, Kind, Part, dist_data, dumps, kin, pick
from specs.names import NameResolver
from specs.yamlpath import YamlPath, where

if TYPE_CHECKING:
    from specs.model import Spec


@dataclass(frozen=True)
class Bigram:
    """``x[t]`` in ``table`` -> ``table[x[t]]``. Keys are the covered token ids."""

    name: str
    table: tuple[tuple[int, Dist], ...]  # (token id, distribution), sorted by token id

    def row(self, token: int) -> Dist | None:
        return self._rows.get(token)

    @cached_property
    def _rows(self) -> dict[int, Dist]:
        return dict(self.table)

    @cached_property
    def keys(self) -> frozenset[int]:
        return frozenset(t for t, _ in self.table)


class _Part(Part):
    """Per current token: the first bigram rule covering it and its row."""

    def __init__(self, rules: Sequence[tuple[int, Bigram]], dists: DistIds, vocab_size: int):
        self.rule = np.full(vocab_size + 1, -1, dtype=np.int64)  # -1: no bigram
        self.dist = np.zeros(vocab_size + 1, dtype=np.int64)
        for rule_id, rule in rules:
            for token, dist in rule.table:
                if self.rule[token] < 0:
                    self.rule[token] = rule_id
                    self.dist[token] = dists.id(dist)

    def finish(self, width: int, no_code: int) -> None:
        codes = np.where(self.rule >= 0, self.rule * width + self.dist, no_code)
        self.codes = codes[None, :]

    def local(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(self.codes.shape[1], dtype=np.int64), self.codes


class BigramKind(Kind):
    key = "bigram"
    rule_class = Bigram
    schema = dict[StrictStr, NextMap]

    def resolve(
        self, name: str, body: Any, names: NameResolver, path: YamlPath, max_len: int
    ) -> Bigram:
        if not body:
            raise CraftError(
                "empty bigram table",
                where=where(names.source, path),
                fix="add rows such as `alice: {sees: 1}`, or remove the rule",
            )
        rows: dict[int, tuple[int, Dist]] = {}
        for key, table in body.items():
            ids = names.ids(key, path / key)
            rank, dist = names.rank(key), names.dist(table, path / key)
            for i in ids:
                if i not in rows or rank < rows[i][0]:
                    rows[i] = (rank, dist)
        return Bigram(name, tuple((i, rows[i][1]) for i in sorted(rows)))

    def to_data(self, rule: Bigram, vocab: Vocab) -> dict[str, Any]:
        return {vocab.tokens[i]: dist_data(vocab, d) for i, d in rule.table}

    def json_chunks(self, rule: Bigram, vocab: Vocab, cache: dict[int, Any]) -> Iterator[str]:
        """One row a piece: a ``"*"`` row over 4,000 tokens is 16 million entries, never
        held at once; a row shared by many tokens (one Dist object) is written once."""
        yield "{"
        for j, (token, dist) in enumerate(rule.table):
            if id(dist) not in cache:
                cache[id(dist)] = dumps(dist_data(vocab, dist))
            yield f"{',' if j else ''}{dumps(vocab.tokens[token])}:{cache[id(dist)]}"
        yield "}"

    def json_size(self, rule: Bigram, vocab: Vocab, cache: dict[int, Any]) -> int:
        total = 2 + len(rule.table) - 1  # braces and commas
        for token, dist in rule.table:
            if id(dist) not in cache:
                cache[id(dist)] = len(dumps(dist_data(vocab, dist)).encode("utf-8"))
            total += len(dumps(vocab.tokens[token]).encode("utf-8")) + 1 + cache[id(dist)]
        return total

    def unconditional(self, rule: Bigram) -> frozenset[int]:
        return rule.keys

    def cues(self, rule: Bigram) -> frozenset[int]:
        return rule.keys

    def exact(self, rule: Bigram, x: Sequence[int], vocab_size: int) -> Dist | None:
        return rule.row(x[-1])

    def compile(self, rules: Sequence[tuple[int, Bigram]], dists: DistIds, vocab_size: int) -> Part:
        return _Part(rules, dists, vocab_size)

    def targeted_ending(self, spec: Spec, rule: Bigram, rng: np.random.Generator) -> list[int]:
        return [pick(rng, rule.keys)]

    def ending(self, spec: Spec, rule: Bigram, rng: np.random.Generator) -> list[int]:
        return [pick(rng, rule.keys)]

    def near_endings(self, spec: Spec, rule: Bigram, rng: np.random.Generator) -> list[list[int]]:
        """A token of a key's category that is not a key."""
        others = kin(spec, rule.keys)
        return [[pick(rng, others)]] if others else []

    def overlay(self, spec: Spec, rule: Bigram, ctx: list[int], rng) -> list[int] | None:
        return list(ctx) if ctx[-1] in rule.keys else None


KIND = BigramKind()
