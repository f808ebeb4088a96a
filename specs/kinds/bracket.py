"""The ``bracket`` kind: at a cue, with a bracket still open -> its closer.

YAML: ``bracket: {pairs: {"(": ")", "[": "]"}, cue: [".", ","]}``. ``pairs`` maps
opener tokens to closer tokens (all distinct tokens); ``cue`` is a selector whose
tokens neither open nor close. Defined for every context: scan ``x[1..t]`` left to
right keeping a stack; an opener pushes; a closer pops when it is the closer of the
top opener, and is otherwise ignored (also on an empty stack). The rule fires at ``t``
when ``x[t]`` is a cue and the stack is non-empty; the next token is the closer of the
top opener, with probability 1. E.g. ``( [ ) .`` -> ``]`` (the ``)`` is ignored), ``(
[ ] .`` -> ``)``, ``( ) .`` and ``) .`` -> no fire.

A bracket never fires at ``t = 1`` (a cue is not an opener, so the stack is empty).
The engine keeps, per row, the stack of expected closers (``no_code`` in slot 0, so
an empty stack's top is ``no_code``) and its top; the code at a cue is ``rule id * D +
top`` (the top's one-hot id is the token itself), ``>= no_code`` on an empty stack.
The test contexts live in :mod:`specs.kinds.bracket_contexts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import StrictStr

from specs.core import Dist, Vocab
from specs.errors import CraftError
from specs.fields import Selector, Strict
from specs.kinds import bracket_contexts as contexts
from specs.kinds.base import DistIds, Kind, Part, mask, one_hot, token_list
from specs.names import STAR, NameResolver
from specs.yamlpath import YamlPath, where

if TYPE_CHECKING:
    from specs.model import Spec


@dataclass(frozen=True)
class Bracket:
    """``x[t] in cue`` and the bracket stack of ``x[1..t]`` is non-empty -> the closer of
    its top opener (see the module docstring for the stack)."""

    name: str
    pairs: tuple[tuple[int, int], ...]  # (opener, closer), sorted by opener id
    cue: frozenset[int]

    @cached_property
    def closer_of(self) -> dict[int, int]:
        return dict(self.pairs)

    @cached_property
    def openers(self) -> frozenset[int]:
        return frozenset(o for o, _ in self.pairs)

    @cached_property
    def closers(self) -> frozenset[int]:
        return frozenset(c for _, c in self.pairs)

    def stack(self, tokens: Sequence[int]) -> list[int]:
        """The closers the open brackets of ``tokens`` expect, innermost last."""
        out: list[int] = []
        closer_of = self.closer_of
        for token in tokens:
            closer = closer_of.get(token)
            if closer is not None:
                out.append(closer)
            elif out and token == out[-1]:
                out.pop()
        return out


class BracketFile(Strict):
    """``bracket: {pairs: {opener: closer, ...}, cue: ...}``."""

    pairs: dict[StrictStr, StrictStr]
    cue: Selector


def _token(names: NameResolver, name: str, role: str, path: YamlPath) -> int:
    """The id of a single token named in ``pairs`` (not a category, not ``"*"``)."""
    names.ids(name, path)  # an unknown name raises, with a "did you mean"
    if name == STAR or name in names.vocab.category_names():
        what = "every token" if name == STAR else "a category"
        raise CraftError(
            f"the {role} {name!r} is {what}, not a token",
            where=where(names.source, path),
            fix='name one token on each side of a pair, such as `"(": ")"`',
        )
    return names.vocab.index(name)


def _pairs(
    body: BracketFile, names: NameResolver, path: YamlPath
) -> tuple[list[tuple[int, int]], dict[int, str]]:
    """The checked ``(opener, closer)`` pairs, and the role of every bracket token."""
    if not body.pairs:
        raise CraftError(
            "empty bracket pairs",
            where=where(names.source, path),
            fix='add pairs such as `"(": ")"`, or remove the rule',
        )
    pairs, role = [], {}
    for opener, closer in body.pairs.items():
        at = path / opener
        o, c = _token(names, opener, "opener", at), _token(names, closer, "closer", at)
        if o == c:
            raise CraftError(
                f"{opener!r} is its own closer",
                where=where(names.source, at),
                fix='close each opener with another token, such as `"(": ")"`',
            )
        for token, text in ((o, f"opener of {opener!r}"), (c, f"closer of {opener!r}")):
            if token in role:
                raise CraftError(
                    f"token {names.vocab.tokens[token]!r} is in two pairs: the {text} and "
                    f"the {role[token]}",
                    where=where(names.source, at),
                    fix="use every token in one pair only, as an opener or as a closer",
                )
            role[token] = text
        pairs.append((o, c))
    return pairs, role


class _Part(Part):
    def __init__(self, rules: Sequence[tuple[int, Bracket]], vocab_size: int):
        self.rules, self.vocab_size = list(rules), vocab_size

    def finish(self, width: int, no_code: int) -> None:
        self.no_code, self.tables = no_code, []
        for rule_id, rule in self.rules:
            push = np.full(self.vocab_size + 1, -1, dtype=np.int64)  # opener -> its closer
            for opener, closer in rule.pairs:
                push[opener] = closer
            cue_base = np.where(mask(self.vocab_size, rule.cue), rule_id * width, no_code)
            self.tables.append((push, cue_base))

    def start(self, batch: int, length: int):
        stacks = [_Stack(push, base, self.no_code, batch, length) for push, base in self.tables]
        if len(stacks) == 1:
            return stacks[0].step

        def step(tokens: np.ndarray, t: int, current: np.ndarray) -> np.ndarray:
            codes = [stack.step(tokens, t, current) for stack in stacks]
            return np.minimum.reduce(codes)

        return step


class _Stack:
    """One rule's stacks over a batch: ``stack[b * (L + 1) + d]`` is row ``b``'s closer
    at depth ``d`` (``d = 0``: the ``no_code`` sentinel), ``top`` the current one."""

    def __init__(self, push, cue_base, no_code: int, batch: int, length: int):
        self.push, self.cue_base = push, cue_base
        self.stack = np.full(batch * (length + 1), no_code, dtype=np.int64)
        self.base = np.arange(batch, dtype=np.int64) * (length + 1)
        self.depth = np.zeros(batch, dtype=np.int64)
        self.top = np.full(batch, no_code, dtype=np.int64)

    def step(self, tokens: np.ndarray, t: int, current: np.ndarray) -> np.ndarray:
        """Process ``x[t]``, then the code of the rule at ``t`` per row."""
        closer = self.push.take(current)  # the closer an opener pushes; -1 otherwise
        pushed = closer >= 0
        self.depth += pushed
        self.depth -= current == self.top  # the top's closer pops; other closers: ignored
        slot = self.base + self.depth
        self.top = np.where(pushed, closer, self.stack.take(slot))
        self.stack[slot] = self.top
        return self.cue_base.take(current) + self.top


class BracketKind(Kind):
    key = "bracket"
    rule_class = Bracket
    schema = BracketFile

    def resolve(
        self, name: str, body: BracketFile, names: NameResolver, path: YamlPath, max_len: int
    ) -> Bracket:
        pairs, role = _pairs(body, names, path / "pairs")
        cue = names.selector(body.cue, path / "cue")
        clash = sorted(cue & role.keys())
        if clash:
            raise CraftError(
                f"the cue token {names.vocab.tokens[clash[0]]!r} is also the {role[clash[0]]}",
                where=where(names.source, path / "cue"),
                fix="make the cue tokens that neither open nor close (e.g. a category "
                "without the brackets)",
            )
        return Bracket(name, tuple(sorted(pairs)), cue)

    def to_data(self, rule: Bracket, vocab: Vocab) -> dict[str, Any]:
        pairs = {vocab.tokens[o]: vocab.tokens[c] for o, c in rule.pairs}
        return {"pairs": pairs, "cue": token_list(vocab, rule.cue)}

    def cues(self, rule: Bracket) -> frozenset[int]:
        return rule.cue

    def covers(self, earlier: Bracket, rule: Bracket) -> bool:
        return earlier.pairs == rule.pairs and rule.cue <= earlier.cue

    def exact(self, rule: Bracket, x: Sequence[int], vocab_size: int) -> Dist | None:
        if x[-1] not in rule.cue:
            return None
        stack = rule.stack(x[1:])
        return one_hot(vocab_size, stack[-1]) if stack else None

    def compile(
        self, rules: Sequence[tuple[int, Bracket]], dists: DistIds, vocab_size: int
    ) -> Part:
        return _Part(rules, vocab_size)

    def state_bytes(self, rule: Bracket, batch: int, length: int) -> int:
        return 8 * batch * (length + 4)  # the stacks, depth, top, and a temporary

    def targeted_ending(self, spec: Spec, rule: Bracket, rng: np.random.Generator) -> list[int]:
        return contexts.firing(spec, rule, rng)

    def ending(self, spec: Spec, rule: Bracket, rng: np.random.Generator) -> list[int]:
        return contexts.firing(spec, rule, rng)

    def near_endings(self, spec: Spec, rule: Bracket, rng: np.random.Generator) -> list[list[int]]:
        return contexts.near(spec, rule, rng)

    def overlay(
        self, spec: Spec, rule: Bracket, ctx: list[int], rng: np.random.Generator
    ) -> list[int] | None:
        return contexts.overlay(spec, rule, ctx, rng)


KIND = BracketKind()
