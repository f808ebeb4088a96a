"""The ``induction`` kind: ``x[t]`` seen before -> what followed its FIRST occurrence.

YAML: ``induction: {on}``. It fires at ``t`` when ``x[t] in on`` and ``x[s] == x[t]``
for some ``1 <= s < t``; the next token is ``x[s*+1]`` for the smallest such ``s*``
(the earliest occurrence wins), with probability 1. The engine keeps, per row and
token, what followed its first occurrence (``no_code`` while unseen), written when the
follower is known (one step later); that follower is also the id of its one-hot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from specs.core import Dist, Vocab
from specs.fields import Selector, Strict
from specs.kinds.base import DistIds, Kind, Part, filler, kin, one_hot, pick, token_list
from specs.names import NameResolver
from specs.yamlpath import YamlPath

if TYPE_CHECKING:
    from specs.model import Spec


@dataclass(frozen=True)
class Induction:
    """``x[t] in on`` and ``x[s] == x[t]`` for some ``1 <= s < t``: the next token is
    ``x[s*+1]`` for the FIRST such ``s*`` (earliest occurrence wins)."""

    name: str
    on: frozenset[int]


class InductionFile(Strict):
    """``induction: {on: NOUN}``."""

    on: Selector


class _Part(Part):
    def __init__(self, rules: Sequence[tuple[int, Induction]], vocab_size: int):
        self.vocab_size = vocab_size
        self.rule = np.full(vocab_size + 1, -1, dtype=np.int64)  # -1: no induction rule
        for rule_id, rule in rules:  # in priority order: the first rule on a token wins
            on = np.array(sorted(rule.on), dtype=np.int64)
            self.rule[on[self.rule[on] < 0]] = rule_id

    def finish(self, width: int, no_code: int) -> None:
        # rule id * D + (the follower's one-hot id, or no_code while unseen)
        self.base = np.where(self.rule >= 0, self.rule * width, no_code)
        self.no_code = no_code

    def start(self, batch: int, length: int) -> _State:
        return _State(self, batch).step


class _State:
    def __init__(self, part: _Part, batch: int):
        self.part = part
        # follower[b * (V + 1) + x]: the token after the first x (= its one-hot dist id)
        self.follower = np.full(batch * (part.vocab_size + 1), part.no_code, dtype=np.int64)
        self.row_offset = np.arange(batch, dtype=np.int64) * (part.vocab_size + 1)
        self.pending: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def step(self, tokens: np.ndarray, t: int, current: np.ndarray) -> np.ndarray:
        """Packed code of the induction rule per row: ``>= no_code`` when it cannot fire
        (``x[t]`` in no ``on`` or not seen before)."""
        if self.pending is not None:  # x[t] follows x[t-1]: record it if x[t-1] was new
            where, old, new = self.pending
            self.follower[where] = np.where(new, current, old)
        where = self.row_offset + current
        follower = self.follower.take(where)
        self.pending = (where, follower, follower == self.part.no_code)
        return self.part.base.take(current) + follower


class InductionKind(Kind):
    key = "induction"
    rule_class = Induction
    schema = InductionFile

    def resolve(
        self, name: str, body: InductionFile, names: NameResolver, path: YamlPath, max_len: int
    ) -> Induction:
        return Induction(name, names.selector(body.on, path / "on"))

    def to_data(self, rule: Induction, vocab: Vocab) -> dict[str, Any]:
        return {"on": token_list(vocab, rule.on)}

    def cues(self, rule: Induction) -> frozenset[int]:
        return rule.on

    def covers(self, earlier: Induction, rule: Induction) -> bool:
        return rule.on <= earlier.on

    def exact(self, rule: Induction, x: Sequence[int], vocab_size: int) -> Dist | None:
        t, current = len(x) - 1, x[-1]
        if current not in rule.on:
            return None
        for s in range(1, t):
            if x[s] == current:
                return one_hot(vocab_size, x[s + 1])
        return None

    def compile(
        self, rules: Sequence[tuple[int, Induction]], dists: DistIds, vocab_size: int
    ) -> Part:
        return _Part(rules, vocab_size)

    def targeted_ending(self, spec: Spec, rule: Induction, rng: np.random.Generator) -> list[int]:
        token = pick(rng, rule.on)
        middle = rng.integers(0, len(spec.vocab), size=int(rng.integers(0, 4))).tolist()
        return [token, *middle, token]

    def ending(self, spec: Spec, rule: Induction, rng: np.random.Generator) -> list[int]:
        """``x ... x`` with the earlier copy anywhere up to ``max_len`` back (short gaps as
        often as long ones)."""
        token = pick(rng, rule.on)
        most = max(0, spec.max_len - 2)
        top = min(4, most) if rng.random() < 0.5 else most
        middle = int(rng.integers(0, top + 1))
        return [token, *filler(spec, rng, middle, frozenset({token})), token]

    def near_endings(
        self, spec: Spec, rule: Induction, rng: np.random.Generator
    ) -> list[list[int]]:
        """``x x`` (the earlier copy at the last position before), ``y ... x`` with ``y``
        another token of ``x``'s category, two earlier copies with different followers,
        and the first copy against 2 to 6 later copies that all have another follower
        (the earliest must win in every case)."""
        x = pick(rng, rule.on)
        out = [[x, x]]
        others = kin(spec, rule.on) | (rule.on - {x})
        if others:
            gap = filler(spec, rng, int(rng.integers(0, 4)), frozenset({x}))
            out.append([pick(rng, others), *gap, x])
        (f1,) = filler(spec, rng, 1, frozenset({x}))
        (f2,) = filler(spec, rng, 1, frozenset({x, f1}))
        gap = filler(spec, rng, int(rng.integers(0, 4)), frozenset({x}))
        out.append([x, f1, *gap, x, f2, x])
        many = int(rng.integers(2, 7))  # the earliest against many later copies of another
        out.append([x, f1, *[x, f2] * many, x])
        return out

    def overlay(
        self, spec: Spec, rule: Induction, ctx: list[int], rng: np.random.Generator
    ) -> list[int] | None:
        last, out = ctx[-1], list(ctx)
        if last not in rule.on:
            return None
        if len(out) < 3:
            out = filler(spec, rng, 3 - len(out), frozenset()) + out
        out[int(rng.integers(0, len(out) - 2))] = last
        return out


KIND = InductionKind()
