"""The raw shape of a ``craft-spec/1`` file, as pydantic v2 models.

This layer checks structure only (which keys exist, which values are strings, lists,
integers, probabilities); names are resolved against the vocabulary later, in
:mod:`specs.resolve`. A pydantic ``ValidationError`` never leaves this module:
:func:`validate_raw` turns the first problem into a one-line :class:`CraftError` whose
``where`` is the YAML path taken from the error's ``loc``.

Probabilities are parsed exactly into :class:`fractions.Fraction`: strings from their
decimal or ``a/b`` text, YAML/JSON floats via ``Fraction(str(value))`` (so ``0.7``
becomes ``7/10``, never the binary float ``0.6999999999999999555910790149937...``).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    PlainValidator,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from specs.errors import CraftError
from specs.model import SPEC_FORMAT
from specs.yamlpath import YamlPath, where

# "0.7", "-1", ".5", "2.5e-3" (exponent bounded so Fraction stays cheap) or "1/3".
_DECIMAL = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?\s*\Z")
_RATIO = re.compile(r"\s*[+-]?\d+\s*/\s*\d+\s*\Z")
_KINDS = ("bigram", "trigram", "skip_bigram", "induction")


def describe(value: Any) -> str:
    """A short human description of a parsed YAML value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        text = str(value)
        return f"the integer {text if len(text) <= 30 else text[:27] + '...'}"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, str):
        text = value if len(value) <= 30 else value[:27] + "..."
        return f"the string {text!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _craft_error(message: str, fix: str) -> PydanticCustomError:
    return PydanticCustomError("craft", "{message}", {"message": message, "fix": fix})


def parse_probability(value: Any) -> Fraction:
    """An exact probability from a YAML/JSON scalar (sign is checked later)."""
    fix = 'write a number such as 0.7, or a fraction as a string such as "1/3"'
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _craft_error(f"expected a probability, got {describe(value)}", fix)
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _craft_error(f"probability {value!r} is not a finite number", fix)
        return Fraction(str(value))
    if _DECIMAL.match(value):
        return Fraction(value.strip())
    if _RATIO.match(value):
        num, den = (int(part) for part in value.split("/"))
        if den == 0:
            raise _craft_error(f"probability {value!r} divides by zero", fix)
        return Fraction(num, den)
    raise _craft_error(f"cannot read {describe(value)} as a probability", fix)


def parse_selector(value: Any) -> tuple[str, ...]:
    """A token, a category, ``"*"``, or a non-empty list of them."""
    fix = "write a token or category name, or a list of them such as [alice, NOUN]"
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list | tuple):
        raise _craft_error(f"expected a token, a category or a list, got {describe(value)}", fix)
    if not value:
        raise _craft_error("empty list: it would never match", fix)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _craft_error(f"item {i} is {describe(item)}, expected a name", fix)
    return tuple(value)


Probability = Annotated[Fraction, PlainValidator(parse_probability)]
Selector = Annotated[tuple[str, ...], PlainValidator(parse_selector)]
NextMap = dict[StrictStr, Probability]


class _Strict(BaseModel):
    """Rejects unknown keys, naming the allowed ones."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = tuple(cls.model_fields)
            for key in data:
                if key not in allowed:
                    raise PydanticCustomError(
                        "unknown_key", "unknown key", {"key": key, "allowed": allowed}
                    )
        return data


class TrigramFile(_Strict):
    """``trigram: {after: [first, second], next: {...}}``."""

    after: list[Selector]
    next: NextMap


class SkipBigramFile(_Strict):
    """``skip_bigram: {anchor, cue, window: [lo, hi], next: {...}}``."""

    anchor: Selector
    cue: Selector
    window: list[StrictInt]
    next: NextMap


class InductionFile(_Strict):
    """``induction: {on: NOUN}``."""

    on: Selector


class RuleFile(_Strict):
    """One item of `rules`: an optional `name` and exactly one rule kind."""

    name: StrictStr | None = None
    bigram: dict[StrictStr, NextMap] | None = None
    trigram: TrigramFile | None = None
    skip_bigram: SkipBigramFile | None = None
    induction: InductionFile | None = None

    def kinds(self) -> tuple[str, ...]:
        """The rule kinds present in this item (exactly one is valid)."""
        return tuple(kind for kind in _KINDS if getattr(self, kind) is not None)


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
