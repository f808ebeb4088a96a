"""The resolved spec: frozen dataclasses every other package reads.

A YAML spec (see ``specs/README.md``) is validated and *resolved* into these objects:
token and category names become token ids, ``next`` tables become exact
:class:`Dist` objects over the whole vocabulary, and bigram tables are expanded per
token with their precedence (token key > category key > ``"*"``) already applied.

:class:`Vocab`, :class:`Dist` and the reserved names live in :mod:`specs.core`; each
rule class lives with its kind in :mod:`specs.kinds` (one module per kind). They are
all re-exported here, the one place other packages import them from.

Shape glossary: ``V`` vocabulary size (BOS excluded); token ids are ``0..V-1`` in
vocabulary order (categories in file order, tokens in listed order); ``BOS_ID == V``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from specs.core import BOS, MAX_LEN_LIMIT, SPEC_FORMAT, START_RULE, Dist, Vocab
from specs.kinds import Bigram, Bracket, Copy, Induction, Rule, SkipBigram, Trigram

__all__ = [
    "BOS",
    "MAX_LEN_LIMIT",
    "SPEC_FORMAT",
    "START_RULE",
    "Bigram",
    "Bracket",
    "Copy",
    "Dist",
    "Induction",
    "Rule",
    "SkipBigram",
    "Spec",
    "Trigram",
    "Vocab",
]


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
