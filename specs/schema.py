"""The raw shape of a ``craft-spec/1`` file, as pydantic v2 models.

This layer checks structure only (which keys exist, which values are strings, lists,
integers, probabilities); names are resolved against the vocabulary later, in
:mod:`specs.resolve`. A pydantic ``ValidationError`` never leaves this module:
:func:`validate_raw` turns the first problem into a one-line :class:`CraftError` whose
``where`` is the YAML path taken from the error's ``loc``.

The field types (exact probabilities, selectors, ``next`` tables) are in
:mod:`specs.fields`; the body of each rule kind is its kind's ``schema``
(:mod:`specs.kinds`): :data:`RuleFile` has one optional field per kind, in registry
order.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, StrictInt, StrictStr, ValidationError, create_model

from specs.core import SPEC_FORMAT
from specs.errors import CraftError
from specs.fields import (
    NextMap,
    Probability,
    Selector,
    Strict,
    craft_error,
    describe,
    parse_probability,
    parse_selector,
)
from specs.kinds import KEYS, KINDS
from specs.yamlpath import YamlPath, where

_Strict = Strict  # the names this module had before the field types moved out
_craft_error = craft_error

__all__ = [
    "NextMap",
    "Probability",
    "RuleFile",
    "Selector",
    "SpecFile",
    "describe",
    "parse_probability",
    "parse_selector",
    "validate_raw",
]


def _field(key: str) -> str:
    """The attribute of a kind's YAML key: the key itself, unless pydantic's BaseModel
    has that name (``copy``), then with a trailing underscore (the key is its alias)."""
    return f"{key}_" if hasattr(BaseModel, key) else key


class _RuleItem(Strict):
    """One item of `rules`: an optional `name` and exactly one rule kind."""

    name: StrictStr | None = None

    def kinds(self) -> tuple[str, ...]:
        """The rule kinds present in this item (exactly one is valid)."""
        return tuple(key for key in KEYS if self.body(key) is not None)

    def body(self, key: str) -> Any:
        """The raw body of the kind ``key`` (None when absent)."""
        return getattr(self, _field(key))


RuleFile = create_model(
    "RuleFile",
    __base__=_RuleItem,
    __doc__=_RuleItem.__doc__,
    **{_field(k.key): (k.schema | None, Field(None, alias=k.key)) for k in KINDS},
)


class SpecFile(_Strict):
    """The whole file (``format`` is checked before this model runs)."""

    format: StrictStr
    name: StrictStr
    vocab: dict[StrictStr, list[StrictStr]]
    max_len: StrictInt
    start: NextMap
    rules: list[RuleFile]


_EXPECTED = {
    "string_type": ("a string", "quote it if it looks like a number, a boolean or null"),
    "int_type": ("an integer", "write a whole number such as 32"),
    "dict_type": ("a mapping", "write it as `key: value` entries"),
    "model_type": ("a mapping", "write it as `key: value` entries"),
    "model_attributes_type": ("a mapping", "write it as `key: value` entries"),
    "list_type": ("a list", "write it as a list such as [a, b]"),
}


def _loc_path(loc: tuple[Any, ...]) -> YamlPath:
    return YamlPath(tuple(part for part in loc if isinstance(part, str | int)))


def _to_craft_error(error: Any, source: str) -> CraftError:
    """One pydantic error dict -> a one-line CraftError with the YAML path."""
    kind, loc, value = error["type"], tuple(error["loc"]), error.get("input")
    ctx = error.get("ctx") or {}
    if len(loc) >= 2 and loc[-1] == "[key]":
        parent = _loc_path(loc[:-2])
        expected, _ = _EXPECTED.get(kind, ("a string", ""))
        return CraftError(
            f"the key {describe(value)} must be {expected}",
            where=where(source, parent),
            fix="quote the key (write it as a string)",
        )
    path = _loc_path(loc)
    if kind == "missing":
        key = str(path.parts[-1]) if path.parts else "?"
        parent = f"under {path.parent}" if path.parent.parts else "at the top level"
        return CraftError(
            "missing required key", where=where(source, path), fix=f"add `{key}:` {parent}"
        )
    if kind == "unknown_key":
        key = ctx["key"]
        at = path / key if isinstance(key, str) else path
        allowed = ", ".join(ctx["allowed"])
        return CraftError(
            f"unknown key {key!r}",
            where=where(source, at),
            fix=f"remove it or use one of: {allowed}",
        )
    if kind == "craft":
        return CraftError(ctx["message"], where=where(source, path), fix=ctx["fix"])
    if kind in _EXPECTED:
        expected, fix = _EXPECTED[kind]
        return CraftError(
            f"expected {expected}, got {describe(value)}", where=where(source, path), fix=fix
        )
    return CraftError(
        f"{error['msg']} (got {describe(value)})",
        where=where(source, path),
        fix="see specs/README.md for the format",
    )


def validate_raw(data: Any, source: str) -> SpecFile:
    """Check the structure of parsed spec data.

    Args:
        data: the parsed YAML/JSON document.
        source: file name used in error messages.

    Returns:
        The validated raw spec (names not yet resolved).

    Raises:
        CraftError: the first structural problem, with its YAML path.
    """
    if not isinstance(data, dict):
        raise CraftError(
            f"the top level is {describe(data)}, expected a mapping",
            where=source,
            fix="start the file with `format: craft-spec/1` and the other top-level keys",
        )
    fmt = data.get("format")
    if fmt != SPEC_FORMAT:
        shown = repr(fmt) if isinstance(fmt, str) else describe(fmt)
        problem = "missing required key" if fmt is None else f"unsupported format {shown}"
        raise CraftError(
            problem,
            where=where(source, YamlPath(("format",))),
            fix=f"put `format: {SPEC_FORMAT}` at the top of the file",
        )
    try:
        return SpecFile.model_validate(data)
    except ValidationError as exc:
        raise _to_craft_error(exc.errors()[0], source) from None
