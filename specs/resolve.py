"""Resolving a structurally valid raw spec into a :class:`~specs.model.Spec`.

Every check that needs the vocabulary lives here: names of tokens and categories,
probabilities that sum to 1, windows that fit ``max_len``, rule names. Each failure is
a one-line :class:`CraftError` naming the file, the YAML path and the fix. Coverage and
shadowing (properties of the rule list as a whole) are in :mod:`specs.analysis`.
"""

from __future__ import annotations

import difflib
import unicodedata
import warnings
from dataclasses import dataclass, field
from fractions import Fraction

from specs.errors import CraftError, CraftWarning
from specs.model import (
    BOS,
    MAX_LEN_LIMIT,
    START_RULE,
    Bigram,
    Dist,
    Induction,
    Rule,
    SkipBigram,
    Trigram,
    Vocab,
)
from specs.schema import RuleFile, SkipBigramFile, SpecFile, TrigramFile
from specs.yamlpath import ROOT, YamlPath, where

STAR = "*"  # the bigram key (and selector) meaning "every token"
RESERVED = (BOS, STAR)
OVERALL = "overall"  # the all-rules figure beside the per-rule ones in logs and reports
RESERVED_RULES = (START_RULE, OVERALL)


def fmt_fraction(value: Fraction) -> str:
    """A fraction for a message: ``6/5``; very long ones approximately."""
    text = str(value)
    if len(text) <= 24:
        return text
    try:
        return f"about {float(value):.17g}"
    except OverflowError:
        return "a huge number"


def _items(count: int) -> str:
    return f"{count} item" if count == 1 else f"{count} items"


def _check_name(name: str, what: str, path: YamlPath, source: str) -> None:
    if name in RESERVED:
        raise CraftError(
            f"{name!r} is reserved and cannot be a {what} name",
            where=where(source, path),
            fix=f"rename it ({BOS!r} is the beginning-of-sequence token, {STAR!r} means "
            "every token)",
        )
    if not name or any(ch.isspace() for ch in name):
        raise CraftError(
            f"{what} name {name!r} is empty or contains whitespace",
            where=where(source, path),
            fix="use a non-empty name without spaces (e.g. with underscores)",
        )
    hidden = invisible(name)
    if hidden:
        raise CraftError(
            f"{what} name {name!r} contains the invisible character {hidden}",
            where=where(source, path),
            fix="retype the name (a look-alike of another name would pass unnoticed)",
        )


def invisible(name: str) -> str | None:
    """The first character of ``name`` that prints as nothing or reorders text (Unicode
    categories Cc, Cf, Cs, Co, Cn: controls, zero-width spaces and joiners, bidirectional
    overrides, unassigned), as ``U+200B ZERO WIDTH SPACE``; None when there is none."""
    for ch in name:
        if unicodedata.category(ch).startswith("C"):
            return f"U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed')}"
    return None


def _look_alikes(tokens: list[str], source: str) -> None:
    """Warn about distinct names that are one name after Unicode NFKC normalisation
    (``ﬁle`` and ``file``, a full-width ``ａ`` and ``a``): they print alike."""
    seen: dict[str, str] = {}
    for tok in tokens:
        key = unicodedata.normalize("NFKC", tok)
        if key in seen:
            warnings.warn(
                f"{source}: tokens {seen[key]!r} and {tok!r} print alike (the same after "
                "Unicode NFKC normalisation); rename one unless that is meant",
                CraftWarning,
                stacklevel=2,
            )
        seen.setdefault(key, tok)


def resolve_vocab(raw: dict[str, list[str]], source: str) -> Vocab:
    """Categories -> Vocab, checking names, emptiness and uniqueness."""
    path = ROOT / "vocab"
    if not raw:
        raise CraftError(
            "the vocabulary is empty", where=where(source, path), fix="add a category of tokens"
        )
    home: dict[str, str] = {}
    for cat, tokens in raw.items():
        _check_name(cat, "category", path / cat, source)
        if not tokens:
            raise CraftError(
                f"category {cat!r} is empty",
                where=where(source, path / cat),
                fix="list at least one token in it, or remove the category",
            )
        for i, tok in enumerate(tokens):
            _check_name(tok, "token", path / cat / i, source)
            if tok in home:
                twice = "twice in" if home[tok] == cat else f"in {home[tok]!r} and in"
                raise CraftError(
                    f"token {tok!r} is listed {twice} {cat!r}",
                    where=where(source, path / cat / i),
                    fix="list every token exactly once, in one category",
                )
            home[tok] = cat
    for cat in raw:
        if cat in home:
            raise CraftError(
                f"category {cat!r} has the same name as a token of category {home[cat]!r}",
                where=where(source, path / cat),
                fix="rename the category or the token (names must be unique)",
            )
    _look_alikes([tok for tokens in raw.values() for tok in tokens], source)
    return Vocab(tuple((cat, tuple(tokens)) for cat, tokens in raw.items()))


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


def _bigram(
    name: str, raw: dict[str, dict[str, Fraction]], names: NameResolver, path: YamlPath
) -> Bigram:
    if not raw:
        raise CraftError(
            "empty bigram table",
            where=where(names.source, path),
            fix="add rows such as `alice: {sees: 1}`, or remove the rule",
        )
    rows: dict[int, tuple[int, Dist]] = {}
    for key, table in raw.items():
        ids = names.ids(key, path / key)
        rank, dist = names.rank(key), names.dist(table, path / key)
        for i in ids:
            if i not in rows or rank < rows[i][0]:
                rows[i] = (rank, dist)
    return Bigram(name, tuple((i, rows[i][1]) for i in sorted(rows)))


def _trigram(name: str, raw: TrigramFile, names: NameResolver, path: YamlPath) -> Trigram:
    if len(raw.after) != 2:
        raise CraftError(
            f"`after` has {_items(len(raw.after))}, expected 2",
            where=where(names.source, path / "after"),
            fix="write `after: [first, second]` (the two tokens before the prediction)",
        )
    first = names.selector(raw.after[0], path / "after" / 0)
    second = names.selector(raw.after[1], path / "after" / 1)
    return Trigram(name, first, second, names.dist(raw.next, path / "next"))


def _skip_bigram(
    name: str, raw: SkipBigramFile, names: NameResolver, path: YamlPath, max_len: int
) -> SkipBigram:
    window = raw.window
    fix = f"write `window: [lo, hi]` with 1 <= lo <= hi < max_len ({max_len})"
    if len(window) != 2:
        raise CraftError(
            f"`window` has {_items(len(window))}, expected 2",
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
    anchor = names.selector(raw.anchor, path / "anchor")
    cue = names.selector(raw.cue, path / "cue")
    return SkipBigram(name, anchor, cue, (lo, hi), names.dist(raw.next, path / "next"))


def _rule_name(raw: RuleFile, kind: str, index: int, names: NameResolver) -> str:
    path = ROOT / "rules" / index / "name"
    if raw.name is None:
        return f"{kind}-{index}"
    bad = raw.name in RESERVED_RULES or not raw.name or any(ch.isspace() for ch in raw.name)
    if bad or invisible(raw.name):
        raise CraftError(
            f"rule name {raw.name!r} is reserved, empty, or contains whitespace or an "
            "invisible character",
            where=where(names.source, path),
            fix=f"choose another name ({START_RULE!r} names the start distribution, "
            f"{OVERALL!r} the figure over all rules in reports and logs)",
        )
    return raw.name


def resolve_rule(raw: RuleFile, index: int, names: NameResolver, max_len: int) -> Rule:
    """One raw rule item -> a resolved rule."""
    path = ROOT / "rules" / index
    kinds = raw.kinds()
    if len(kinds) != 1:
        listed = ", ".join(kinds)
        problem = f"has {len(kinds)} kinds ({listed})" if kinds else "has no rule kind"
        raise CraftError(
            f"the rule {problem}",
            where=where(names.source, path),
            fix="give each rule exactly one of bigram, trigram, skip_bigram, induction",
        )
    kind = kinds[0]
    name = _rule_name(raw, kind, index, names)
    body, at = getattr(raw, kind), path / kind
    if kind == "bigram":
        return _bigram(name, body, names, at)
    if kind == "trigram":
        return _trigram(name, body, names, at)
    if kind == "skip_bigram":
        return _skip_bigram(name, body, names, at, max_len)
    return Induction(name, names.selector(body.on, at / "on"))


def resolve_parts(raw: SpecFile, source: str) -> tuple[Vocab, Dist, tuple[Rule, ...]]:
    """Vocabulary, start distribution and rules of a raw spec, all checked.

    Raises:
        CraftError: the first problem, with its YAML path and fix.
    """
    vocab = resolve_vocab(raw.vocab, source)
    if not 1 <= raw.max_len <= MAX_LEN_LIMIT:
        raise CraftError(
            f"{raw.max_len} is out of range, expected 1..{MAX_LEN_LIMIT}",
            where=where(source, ROOT / "max_len"),
            fix=f"use a max_len between 1 and {MAX_LEN_LIMIT}",
        )
    names = NameResolver(vocab, source)
    start = names.dist(raw.start, ROOT / "start")
    rules = tuple(resolve_rule(r, i, names, raw.max_len) for i, r in enumerate(raw.rules))
    first_use: dict[str, int] = {}
    for i, rule in enumerate(rules):
        if rule.name in first_use:
            raise CraftError(
                f"duplicate rule name {rule.name!r} (also rules[{first_use[rule.name]}])",
                where=where(source, ROOT / "rules" / i / "name"),
                fix="give every rule a unique name",
            )
        first_use[rule.name] = i
    return vocab, start, rules
