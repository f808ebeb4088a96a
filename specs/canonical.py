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
from collections.abc import Iterator
from typing import Any

from specs.core import SPEC_FORMAT, Dist, Vocab
from specs.errors import CraftError
from specs.kinds import Rule, kind_of
from specs.kinds.base import dist_data, dumps
from specs.model import Spec


def _dist(vocab: Vocab, dist: Dist) -> dict[str, str]:
    return dist_data(vocab, dist)


def _rule(vocab: Vocab, rule: Rule) -> dict[str, Any]:
    kind = kind_of(rule)
    return {"name": rule.name, kind.key: kind.to_data(rule, vocab)}


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
    """:func:`canonical_json` in pieces (each kind's :meth:`~specs.kinds.base.Kind.json_chunks`),
    so the digest of a spec with a large vocabulary never holds its V x V canonical
    table at once (a ``"*"`` row over 4,000 tokens expands to 16 million entries)."""
    data = spec_to_data(dataclasses.replace(spec, rules=()))
    head = _dumps(data)
    yield head[: -len("[]}")] + "["
    cache: dict[int, Any] = {}  # e.g. a "*" row is one Dist object shared by all its tokens
    for i, rule in enumerate(spec.rules):
        kind = kind_of(rule)
        yield f'{"," if i else ""}{{"name":{_dumps(rule.name)},{_dumps(kind.key)}:'
        yield from kind.json_chunks(rule, spec.vocab, cache)
        yield "}"
    yield "]}"


def _dumps(obj: Any) -> str:
    return dumps(obj)


MAX_CANONICAL_BYTES = 16 * 2**30
"""The largest canonical form :func:`spec_digest` hashes (about 16 s at 1 GB/s): a
``"*"`` row expands to one row per token, so a bigram over V tokens is V x V entries
(a 200,000-token vocabulary: 800 GB, and a 320 GB model)."""


def canonical_size(spec: Spec) -> int:
    """The length of :func:`canonical_json` in bytes, without writing it (each kind's
    :meth:`~specs.kinds.base.Kind.json_size`): what :func:`spec_digest` checks before
    hashing."""

    def size(obj: Any) -> int:
        return len(_dumps(obj).encode("utf-8"))

    total = size(spec_to_data(dataclasses.replace(spec, rules=()))) + max(len(spec.rules) - 1, 0)
    cache: dict[int, Any] = {}
    for rule in spec.rules:
        kind = kind_of(rule)
        total += size(rule.name) + size(kind.key) + len('{"name":,:}')
        total += kind.json_size(rule, spec.vocab, cache)
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
