"""Resolving names (tokens, categories, ``"*"``) of one vocabulary, with located errors.

:class:`NameResolver` is what every rule kind's ``resolve`` hook (:mod:`specs.kinds`)
uses to turn the names of a raw rule into token ids and exact distributions; each
failure is a one-line :class:`~specs.errors.CraftError` naming the file, the YAML path
and the fix.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from fractions import Fraction

from specs.core import Dist, Vocab
from specs.errors import CraftError
from specs.yamlpath import YamlPath, where

STAR = "*"  # the bigram key (and selector) meaning "every token"


def fmt_fraction(value: Fraction) -> str:
    """A fraction for a message: ``6/5``; very long ones approximately."""
    text = str(value)
    if len(text) <= 24:
        return text
    try:
        return f"about {float(value):.17g}"
    except OverflowError:
        return "a huge number"


def items(count: int) -> str:
    """``1 item``, ``3 items``."""
    return f"{count} item" if count == 1 else f"{count} items"


@dataclass(frozen=True)
class NameResolver:
    """Resolves token/category names of one vocabulary, raising located errors."""

    vocab: Vocab
    source: str
    known: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        known = frozenset(self.vocab.tokens) | frozenset(self.vocab.category_names())
        object.__setattr__(self, "known", known | {STAR})

    def ids(self, name: str, path: YamlPath) -> frozenset[int]:
        """Token ids named by a token, a category or ``"*"``."""
        if name not in self.known:
            known = list(self.vocab.tokens) + list(self.vocab.category_names())
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise CraftError(
                f"unknown token or category {name!r}",
                where=where(self.source, path),
                fix=f"{hint}use a token or category listed under `vocab`, or add it there",
            )
        return self.vocab.resolve(name)

    def selector(self, names: tuple[str, ...], path: YamlPath) -> frozenset[int]:
        return frozenset().union(*(self.ids(name, path) for name in names))

    def rank(self, name: str) -> int:
        """Bigram key precedence: token 0 < category 1 < ``"*"`` 2 (lower wins)."""
        if name == STAR:
            return 2
        return 1 if name in self.vocab.category_names() else 0

    def dist(self, table: dict[str, Fraction], path: YamlPath) -> Dist:
        """A ``next`` mapping -> exact Dist; a category spreads its mass uniformly."""
        if not table:
            raise CraftError(
                "empty distribution",
                where=where(self.source, path),
                fix="give at least one token or category, with probabilities summing to 1",
            )
        mass: dict[int, Fraction] = {}
        for name, prob in table.items():
            if prob < 0:
                raise CraftError(
                    f"probability {fmt_fraction(prob)} is negative",
                    where=where(self.source, path / name),
                    fix="use a probability between 0 and 1",
                )
            ids = self.ids(name, path / name)
            for i in ids:
                mass[i] = mass.get(i, Fraction(0)) + prob / len(ids)
        total = sum(table.values(), Fraction(0))
        if total != 1:
            off = "" if len(str(total)) <= 24 else f" (off by {fmt_fraction(total - 1)})"
            raise CraftError(
                f"probabilities sum to {fmt_fraction(total)}, expected 1{off}",
                where=where(self.source, path),
                fix=f"make the probabilities of {path} sum to 1",
            )
        return Dist.from_mass(len(self.vocab), mass)
