"""The canonical form of a resolved spec: itself a valid ``craft-spec/1`` document.

:func:`spec_to_data` writes a :class:`~specs.model.Spec` back as spec data with every
name resolved: each bigram row keyed by its token, each selector a list of tokens in
vocabulary order, each probability an exact fraction string (``"7/10"``), zero
entries omitted. ``parse_spec(spec_to_data(spec))`` gives back an equal spec, and two
files that mean the same thing (e.g. ``{NOUN: 1}`` vs. one row per noun) have the same
canonical form, hence the same :attr:`Spec.sha256`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from typing import Any

from specs.errors import CraftError
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
    return "".join(_json_chunks(spec))


def _json_chunks(spec: Spec) -> Iterator[str]:
    """:func:`canonical_json` in pieces of at most one bigram row each, so the digest of
    a spec with a large vocabulary never holds its V x V canonical table at once (a
    ``"*"`` row over 4,000 tokens expands to 16 million entries)."""
    data = spec_to_data(dataclasses.replace(spec, rules=()))
    head = _dumps(data)
    yield head[: -len("[]}")] + "["
    rows: dict[int, str] = {}  # a "*" row is one Dist object shared by all its tokens
    for i, rule in enumerate(spec.rules):
        yield "," if i else ""
        if isinstance(rule, Bigram):
            yield f'{{"name":{_dumps(rule.name)},"bigram":{{'
            for j, (token, dist) in enumerate(rule.table):
                if id(dist) not in rows:
                    rows[id(dist)] = _dumps(_dist(spec.vocab, dist))
                yield f"{',' if j else ''}{_dumps(spec.vocab.tokens[token])}:{rows[id(dist)]}"
            yield "}}"
        else:
            yield _dumps(_rule(spec.vocab, rule))
    yield "]}"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


MAX_CANONICAL_BYTES = 16 * 2**30
"""The largest canonical form :func:`spec_digest` hashes (about 16 s at 1 GB/s): a
``"*"`` row expands to one row per token, so a bigram over V tokens is V x V entries
(a 200,000-token vocabulary: 800 GB, and a 320 GB model)."""


def canonical_size(spec: Spec) -> int:
    """The length of :func:`canonical_json` in bytes, without writing it (each distinct
    row measured once): what :func:`spec_digest` checks before hashing."""
    vocab, rows = spec.vocab, {}

    def size(obj: Any) -> int:
        return len(_dumps(obj).encode("utf-8"))

    total = size(spec_to_data(dataclasses.replace(spec, rules=()))) + max(len(spec.rules) - 1, 0)
    for rule in spec.rules:
        if not isinstance(rule, Bigram):
            total += size(_rule(vocab, rule))
            continue
        total += size(rule.name) + len('{"name":,"bigram":{}}') + len(rule.table) - 1
        for token, dist in rule.table:
            if id(dist) not in rows:
                rows[id(dist)] = size(_dist(vocab, dist))
            total += size(vocab.tokens[token]) + 1 + rows[id(dist)]
    return total


def spec_digest(spec: Spec) -> str:
    """sha256 hex digest of :func:`canonical_json` (``source`` and ``sha256`` excluded).

    Raises:
        CraftError: a canonical form over :data:`MAX_CANONICAL_BYTES`.
    """
    size = canonical_size(spec)
    if size > MAX_CANONICAL_BYTES:
        raise CraftError(
            f"the spec's canonical form would be {size / 2**30:.0f} GiB ({len(spec.vocab)} "
            f"tokens; each bigram row is written out for every token it covers), over the "
            f"{MAX_CANONICAL_BYTES // 2**30} GiB craft hashes",
            where=spec.source,
            fix="use fewer tokens, or bigram rows that name fewer targets",
        )
    digest = hashlib.sha256()
    for chunk in _json_chunks(spec):
        digest.update(chunk.encode("utf-8"))
    return digest.hexdigest()
