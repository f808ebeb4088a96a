"""The resolved spec: frozen dataclasses every other package reads.

A YAML spec (see ``specs/README.md``) is validated and *resolved* into these objects:
token and category names become token ids, ``next`` tables become exact
:class:`Dist` objects over the whole vocabulary, and bigram tables are expanded per
token with their precedence (token key > category key > ``"*"``) already applied.

Shape glossary: ``V`` vocabulary size (BOS excluded); token ids are ``0..V-1`` in
vocabulary order (categories in file order, tokens in listed order); ``BOS_ID == V``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from pathlib import Path

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


@dataclass(frozen=True)
class Trigram:
    """``x[t-1] in first`` and ``x[t] in second`` (t >= 2, BOS never matches) -> ``next``."""

    name: str
    first: frozenset[int]
    second: frozenset[int]
    next: Dist


@dataclass(frozen=True)
class SkipBigram:
    """``x[t] in cue`` and some ``x[s] in anchor`` with ``lo <= t - s <= hi``, ``s >= 1``."""

    name: str
    anchor: frozenset[int]
    cue: frozenset[int]
    window: tuple[int, int]  # (lo, hi), 1 <= lo <= hi < max_len
    next: Dist


@dataclass(frozen=True)
class Induction:
    """``x[t] in on`` and ``x[s] == x[t]`` for some ``1 <= s < t``: the next token is
    ``x[s*+1]`` for the FIRST such ``s*`` (earliest occurrence wins)."""

    name: str
    on: frozenset[int]


Rule = Bigram | Trigram | SkipBigram | Induction


@dataclass(frozen=True)
class Spec:
    """A resolved spec. Positions: BOS at 0, tokens at ``1..max_len``."""

    name: str
    vocab: Vocab
    max_len: int
    start: Dist
    rules: tuple[Rule, ...]
    source: str = ""  # file it came from ("" when built in code)
    sha256: str = ""  # hash of the canonical (resolved) content

    def provenance(self) -> dict[str, str]:
        """What identifies this spec in a model file: name, content hash and file *name*
        (not the path as typed: the same spec compiled from another folder gives the same
        bytes, and no local path leaks into shared files)."""
        return {"name": self.name, "sha256": self.sha256, "source": Path(self.source).name}

    def rule_names(self) -> tuple[str, ...]:
        """Names indexed by rule id; ``START_RULE`` is appended as the last id."""
        return tuple(r.name for r in self.rules) + (START_RULE,)

    @property
    def start_rule_id(self) -> int:
        return len(self.rules)
