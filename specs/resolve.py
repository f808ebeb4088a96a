"""Resolving a structurally valid raw spec into a :class:`~specs.model.Spec`.

Every check that needs the vocabulary lives here: names of tokens and categories,
probabilities that sum to 1, windows that fit ``max_len``, rule names. Each failure is
a one-line :class:`CraftError` naming the file, the YAML path and the fix. The body of
each rule is resolved by its kind (:mod:`specs.kinds`), with the
:class:`~specs.names.NameResolver` of the vocabulary. Coverage and
shadowing (properties of the rule list as a whole) are in :mod:`specs.analysis`.
"""

from __future__ import annotations

import unicodedata
import warnings

from specs.core import BOS, MAX_LEN_LIMIT, START_RULE, Dist, Vocab
from specs.errors import CraftError, CraftWarning
from specs.kinds import KEYS, Rule, by_key
from specs.names import STAR, NameResolver, fmt_fraction
from specs.schema import RuleFile, SpecFile
from specs.yamlpath import ROOT, YamlPath, where

__all__ = ["NameResolver", "fmt_fraction", "invisible", "resolve_parts", "resolve_rule"]

RESERVED = (BOS, STAR)
OVERALL = "overall"  # the all-rules figure beside the per-rule ones in logs and reports
RESERVED_RULES = (START_RULE, OVERALL)


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
    """One raw rule item -> a resolved rule (its kind's ``resolve`` hook)."""
    path = ROOT / "rules" / index
    kinds = raw.kinds()
    if len(kinds) != 1:
        listed = ", ".join(kinds)
        problem = f"has {len(kinds)} kinds ({listed})" if kinds else "has no rule kind"
        raise CraftError(
            f"the rule {problem}",
            where=where(names.source, path),
            fix=f"give each rule exactly one of {', '.join(KEYS)}",
        )
    kind = by_key(kinds[0])
    name = _rule_name(raw, kind.key, index, names)
    return kind.resolve(name, raw.body(kind.key), names, path / kind.key, max_len)


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
