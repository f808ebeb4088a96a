"""The bottom of the resolved spec: reserved names, :class:`Vocab` and :class:`Dist`.

Everything else in ``specs`` (the rule kinds in :mod:`specs.kinds`, the
:class:`~specs.model.Spec` in :mod:`specs.model`) builds on these, so this module
imports nothing from ``specs``.

Shape glossary: ``V`` vocabulary size (BOS excluded); token ids are ``0..V-1`` in
vocabulary order (categories in file order, tokens in listed order); ``BOS_ID == V``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property

import numpy as np

BOS = "<bos>"  # reserved name of the beginning-of-sequence token (position 0)
START_RULE = "start"  # pseudo-rule name of the prediction made at the BOS position
MAX_LEN_LIMIT = 512  # largest ``max_len`` a spec may declare
SPEC_FORMAT = "craft-spec/1"  # the value of a spec file's ``format`` key


@dataclass(frozen=True)
class Vocab:
    """Categories of tokens. A token belongs to exactly one category.

    Attributes:
        categories: ``((category, (token, ...)), ...)`` in file order.
    """

    categories: tuple[tuple[str, tuple[str, ...]], ...]
    tokens: tuple[str, ...] = field(init=False)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _category_of: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tokens = tuple(t for _, toks in self.categories for t in toks)
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(tokens)})
        object.__setattr__(
            self, "_category_of", {t: c for c, toks in self.categories for t in toks}
        )

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def bos_id(self) -> int:
        return len(self.tokens)

    def index(self, token: str) -> int:
        return self._index[token]

    def category_of(self, token: str) -> str:
        return self._category_of[token]

    def category_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.categories)

    def resolve(self, name: str) -> frozenset[int]:
        """Token ids named by a token, a category, or ``"*"`` (all tokens)."""
        if name == "*":
            return frozenset(range(len(self.tokens)))
        for cat, toks in self.categories:
            if cat == name:
                return frozenset(self._index[t] for t in toks)
        return frozenset({self._index[name]})

    def decode(self, ids) -> list[str]:
        return [BOS if int(i) == self.bos_id else self.tokens[int(i)] for i in ids]


@dataclass(frozen=True)
class Dist:
    """An exact probability distribution over the vocabulary, stored sparsely.

    Attributes:
        size: vocabulary size ``V``.
        items: ``((token id, probability), ...)`` for the tokens with probability > 0,
            sorted by id; the probabilities are exact and sum to 1.
    """

    size: int
    items: tuple[tuple[int, Fraction], ...]

    def __post_init__(self) -> None:
        ids = [i for i, _ in self.items]
        if ids != sorted(set(ids)) or (ids and not 0 <= ids[0] <= ids[-1] < self.size):
            raise ValueError(f"Dist ids must be sorted, unique and in 0..{self.size - 1}")
        if any(p <= 0 for _, p in self.items) or sum(p for _, p in self.items) != 1:
            raise ValueError(f"Dist must be positive and sum to 1: {self.items}")

    @staticmethod
    def from_mass(size: int, mass: Mapping[int, Fraction]) -> Dist:
        """From ``{token id: probability}`` (zeros dropped)."""
        return Dist(size, tuple(sorted((int(i), Fraction(p)) for i, p in mass.items() if p)))

    @staticmethod
    def from_probs(probs: Sequence[Fraction]) -> Dist:
        """From a dense sequence of ``V`` probabilities."""
        return Dist.from_mass(len(probs), dict(enumerate(probs)))

    @cached_property
    def probs(self) -> tuple[Fraction, ...]:
        """Dense: the probability of every token id (length ``V``)."""
        dense = [Fraction(0)] * self.size
        for i, p in self.items:
            dense[i] = p
        return tuple(dense)

    @cached_property
    def support(self) -> tuple[int, ...]:
        return tuple(i for i, _ in self.items)

    @property
    def is_deterministic(self) -> bool:
        return len(self.items) == 1

    @cached_property
    def _array(self) -> np.ndarray:
        out = np.zeros(self.size, dtype=np.float64)
        for i, p in self.items:
            out[i] = float(p)
        out.flags.writeable = False
        return out

    def array(self) -> np.ndarray:
        """float64 [V] (a read-only array shared between calls)."""
        return self._array
