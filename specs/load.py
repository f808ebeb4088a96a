"""Loading specs: file or text -> checked, resolved :class:`~specs.model.Spec`.

The pipeline, one stage a module: text -> data (:mod:`specs.yamlio`) -> raw structure
(:mod:`specs.schema`) -> resolved parts (:mod:`specs.resolve`) -> coverage and
shadowing (:mod:`specs.analysis`) -> Spec with its canonical hash
(:mod:`specs.canonical`). Any user mistake raises :class:`CraftError`; nothing else
escapes. Shadowed rules give a :class:`CraftWarning`.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

from specs.analysis import check_coverage, shadowed_rules
from specs.canonical import spec_digest
from specs.errors import CraftError, CraftWarning
from specs.model import Spec
from specs.resolve import resolve_parts
from specs.schema import validate_raw
from specs.yamlio import parse_text

LIBRARY_DIR = Path(__file__).resolve().parent / "library"
LIBRARY: list[str] = sorted(p.stem for p in LIBRARY_DIR.glob("*.yaml"))


def parse_spec(data: str | dict[str, Any], source: str = "<string>") -> Spec:
    """Check and resolve a spec given as YAML/JSON text or as already-parsed data.

    Args:
        data: spec text (YAML or JSON), or the parsed document (a dict).
        source: name used in error messages and stored as ``Spec.source``.

    Returns:
        The resolved spec, with ``sha256`` set to the hash of its canonical form.

    Raises:
        CraftError: any problem, as one line naming ``source``, the YAML path and the fix.

    Warns:
        CraftWarning: for each rule that earlier rules shadow entirely.

    Example:
        >>> spec = parse_spec('''
        ... format: craft-spec/1
        ... name: coin
        ... vocab: {SIDE: [heads, tails]}
        ... max_len: 8
        ... start: {SIDE: 1}
        ... rules:
        ...   - bigram: {"*": {heads: 0.7, tails: 0.3}}
        ... ''')
        >>> spec.rules[0].name, spec.start.probs
        ('bigram-0', (Fraction(1, 2), Fraction(1, 2)))
    """
    parsed = parse_text(data, source) if isinstance(data, str) else data
    raw = validate_raw(parsed, source)
    vocab, start, rules = resolve_parts(raw, source)
    check_coverage(vocab, rules, source)
    for message in shadowed_rules(rules, source):
        warnings.warn(message, CraftWarning, stacklevel=2)
    spec = Spec(raw.name, vocab, raw.max_len, start, rules, source=source)
    return dataclasses.replace(spec, sha256=spec_digest(spec))


def load_spec(path: str | Path) -> Spec:
    """Load a spec file (YAML or JSON). ``Spec.source`` is ``str(path)``.

    Raises:
        CraftError: unreadable file, invalid YAML, or any spec problem (see
            :func:`parse_spec`).
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CraftError(
            f"cannot read the spec file ({exc.strerror or exc})",
            where=source,
            fix="check the path and the file's permissions",
        ) from None
    except UnicodeDecodeError:
        raise CraftError(
            "the file is not UTF-8 text", where=source, fix="save the spec as UTF-8 YAML or JSON"
        ) from None
    return parse_spec(text, source)


def library_path(name: str) -> Path:
    """Path of a library spec, by name (``"toy_language"``; a ``.yaml`` suffix is allowed).

    Raises:
        CraftError: no such library spec.
    """
    stem = name.removesuffix(".yaml")
    if stem not in LIBRARY:
        raise CraftError(
            f"no library spec named {name!r}",
            where="specs/library",
            fix=f"use one of: {', '.join(LIBRARY)}",
        )
    return LIBRARY_DIR / f"{stem}.yaml"


def load_library(name: str) -> Spec:
    """Load a library spec by name (see :data:`LIBRARY`)."""
    return load_spec(library_path(name))
