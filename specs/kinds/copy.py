"""The ``copy`` kind: at a cue, copy the token ``offset`` positions back.

YAML: ``copy: {cue: "?", offset: 1}`` with ``1 <= offset < max_len``. It fires at ``t``
when ``x[t] in cue`` and ``t - offset >= 1`` (a real token, never BOS); the next token
is ``x[t - offset]`` with probability 1. E.g. with ``offset: 1``: ``a ?`` -> ``a``, ``?
?`` -> ``?``, and ``?`` alone (``t = 1``) does not fire. The engine needs no state: at
``t`` it reads column ``t - offset`` of the tokens, whose one-hot id is the token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import StrictInt

from specs.core import Dist, Vocab
from specs.errors import CraftError
from specs.fields import Selector, Strict
from specs.kinds.base import DistIds, Kind, Part, filler, kin, mask, one_hot, pick, token_list
from specs.names import NameResolver
from specs.yamlpath import YamlPath, where

if TYPE_CHECKING:
    from specs.model import Spec


@dataclass(frozen=True)
class Copy:
    """``x[t] in cue`` and ``t - offset >= 1`` -> ``x[t - offset]``."""

    name: str
    cue: frozenset[int]
    offset: int  # 1 <= offset < max_len


class CopyFile(Strict):
    """``copy: {cue: "?", offset: 1}``."""

    cue: Selector
    offset: StrictInt


class _Part(Part):
    def __init__(self, rules: Sequence[tuple[int, Copy]], vocab_size: int):
        self.rules, self.vocab_size = list(rules), vocab_size

    def finish(self, width: int, no_code: int) -> None:
        self.no_code = no_code
        self.tables = [
            (rule.offset, np.where(mask(self.vocab_size, rule.cue), rule_id * width, no_code))
            for rule_id, rule in self.rules
        ]

    def start(self, batch: int, length: int):
        none = np.full(batch, self.no_code, dtype=np.int64)
        tables = self.tables

        def step(tokens: np.ndarray, t: int, current: np.ndarray) -> np.ndarray:
            """``rule id * D + x[t - offset]`` at a cue (``>= no_code`` elsewhere)."""
            code = none
            for offset, cue_base in tables:
                if t - offset >= 1:
                    code = np.minimum(code, cue_base.take(current) + tokens[:, t - offset])
            return code

        return step


class CopyKind(Kind):
    key = "copy"
    rule_class = Copy
    schema = CopyFile

    def resolve(
        self, name: str, body: CopyFile, names: NameResolver, path: YamlPath, max_len: int
    ) -> Copy:
        if not 1 <= body.offset < max_len:
            raise CraftError(
                f"offset {body.offset} is out of range",
                where=where(names.source, path / "offset"),
                fix=f"write `offset: k` with 1 <= k < max_len ({max_len})",
            )
        return Copy(name, names.selector(body.cue, path / "cue"), body.offset)

    def to_data(self, rule: Copy, vocab: Vocab) -> dict[str, Any]:
        return {"cue": token_list(vocab, rule.cue), "offset": rule.offset}

    def cues(self, rule: Copy) -> frozenset[int]:
        return rule.cue

    def covers(self, earlier: Copy, rule: Copy) -> bool:
        return earlier.offset == rule.offset and rule.cue <= earlier.cue

    def exact(self, rule: Copy, x: Sequence[int], vocab_size: int) -> Dist | None:
        t = len(x) - 1
        if x[t] in rule.cue and t - rule.offset >= 1:
            return one_hot(vocab_size, x[t - rule.offset])
        return None

    def compile(self, rules: Sequence[tuple[int, Copy]], dists: DistIds, vocab_size: int) -> Part:
        return _Part(rules, vocab_size)

    def targeted_ending(self, spec: Spec, rule: Copy, rng: np.random.Generator) -> list[int]:
        return self.ending(spec, rule, rng)

    def ending(self, spec: Spec, rule: Copy, rng: np.random.Generator) -> list[int]:
        """``offset`` random tokens, then a cue (fires after any prefix)."""
        return [*filler(spec, rng, rule.offset, frozenset()), pick(rng, rule.cue)]

    def near_endings(self, spec: Spec, rule: Copy, rng: np.random.Generator) -> list[list[int]]:
        """The cue at ``t = offset`` (right after BOS, it would copy BOS: no fire); two
        distinct tokens at distances ``offset + 1`` and ``offset`` (the nearer is
        copied); the copied token itself a cue; a token of the cue's category that is not
        a cue."""
        cue, k = pick(rng, rule.cue), rule.offset
        out = [[*filler(spec, rng, k - 1, frozenset()), cue]]
        (far,) = filler(spec, rng, 1, frozenset())
        (copied,) = filler(spec, rng, 1, frozenset({far}))
        out.append([far, copied, *filler(spec, rng, k - 1, frozenset({copied})), cue])
        out.append([pick(rng, rule.cue), *filler(spec, rng, k - 1, frozenset()), cue])
        others = kin(spec, rule.cue)
        if others:
            out.append([*filler(spec, rng, k, frozenset()), pick(rng, others)])
        return [e for e in out if len(e) <= spec.max_len]

    def overlay(
        self, spec: Spec, rule: Copy, ctx: list[int], rng: np.random.Generator
    ) -> list[int] | None:
        """Tokens prepended until ``t - offset >= 1`` (the cue is the last token)."""
        if ctx[-1] not in rule.cue:
            return None
        short = max(0, rule.offset + 1 - len(ctx))
        return filler(spec, rng, short, frozenset()) + list(ctx)


KIND = CopyKind()
