"""The canonical form of a resolved spec: itself a valid ``craft-spec/1`` document.

:func:`spec_to_data` writes a :class:`~specs.model.Spec` back as spec data with every
name resolved: each bigram row keyed by its token, each selector a list of tokens in
vocabulary order, each probability an exact fraction string (``"7/10"``), zero
entries omitted. ``parse_spec(spec_to_data(spec))`` gives back an equal spec, and two
files that mean the same thing (e.g. ``{NOUN: 1}`` vs. one row per noun) have the same
canonical form, hence the same :attr:`Spec.sha256`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from specs.model import SPEC_FORMAT, Bigram, Dist, Induction, Rule, SkipBigram, Spec, Vocab


def _dist(vocab: Vocab, dist: Dist) -> dict[str, str]:
    return {vocab.tokens[i]: str(p) for i, p in dist.items}


def _tokens(vocab: Vocab, ids: frozenset[int]) -> list[str]:
    return [vocab.tokens[i] for i in sorted(ids)]


def _rule(vocab: Vocab, rule: Rule) -> dict[str, Any]:
    if isinstance(rule, Bigram):
        body: dict[str, Any] = {vocab.tokens[i]: _dist(vocab, d) for i, d in rule.table}
        return {"name": rule.name, "bigram": body}
    if isinstance(rule, SkipBigram):
        body = {
            "anchor": _tokens(vocab, rule.anchor),
            "cue": _tokens(vocab, rule.cue),
            "window": list(rule.window),
            "next": _dist(vocab, rule.next),
        }
        return {"name": rule.name, "skip_bigram": body}
    if isinstance(rule, Induction):
        return {"name": rule.name, "induction": {"on": _tokens(vocab, rule.on)}}
    body = {
        "after": [_tokens(vocab, rule.first), _tokens(vocab, rule.second)],
        "next": _dist(vocab, rule.next),
    }
    return {"name": rule.name, "trigram": body}


def spec_to_data(spec: Spec) -> dict[str, Any]:
    """The canonical ``craft-spec/1`` data of a resolved spec (JSON-serialisable)."""
    vocab = spec.vocab
    return {
        "format": SPEC_FORMAT,
        "name": spec.name,
        "vocab": {cat: list(tokens) for cat, tokens in vocab.categories},
        "max_len": spec.max_len,
        "start": _dist(vocab, spec.start),
        "rules": [_rule(vocab, rule) for rule in spec.rules],
    }


def canonical_json(spec: Spec) -> str:
    """Compact JSON of :func:`spec_to_data`; key order is fixed (vocab order matters)."""
    return json.dumps(spec_to_data(spec), separators=(",", ":"), ensure_ascii=False)


def spec_digest(spec: Spec) -> str:
    """sha256 hex digest of :func:`canonical_json` (``source`` and ``sha256`` excluded)."""
    return hashlib.sha256(canonical_json(spec).encode("utf-8")).hexdigest()
