"""The value types of a spec file's fields, as pydantic v2 annotations.

:mod:`specs.schema` (the file as a whole) and every rule kind's body schema
(:mod:`specs.kinds`) are built from these: exact probabilities, selectors (a token, a
category, ``"*"`` or a list of them), ``next`` tables, and :class:`Strict`, the base
model that rejects unknown keys. A failed check raises a pydantic error of type
``craft`` carrying the message and the fix; :func:`specs.schema.validate_raw` turns it
into a one-line :class:`~specs.errors.CraftError` with its YAML path.

Probabilities are parsed exactly into :class:`fractions.Fraction`: strings from their
decimal or ``a/b`` text, YAML/JSON floats via ``Fraction(str(value))`` (so ``0.7``
becomes ``7/10``, never the binary float ``0.6999999999999999555910790149937...``).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainValidator, StrictStr, model_validator
from pydantic_core import PydanticCustomError

# "0.7", "-1", ".5", "2.5e-3" (exponent bounded so Fraction stays cheap) or "1/3".
_DECIMAL = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?\s*\Z")
_RATIO = re.compile(r"\s*[+-]?\d+\s*/\s*\d+\s*\Z")


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


def craft_error(message: str, fix: str) -> PydanticCustomError:
    """A validation error that becomes ``CraftError(message, fix=fix)`` at its YAML path."""
    return PydanticCustomError("craft", "{message}", {"message": message, "fix": fix})


def parse_probability(value: Any) -> Fraction:
    """An exact probability from a YAML/JSON scalar (sign is checked later)."""
    fix = 'write a number such as 0.7, or a fraction as a string such as "1/3"'
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise craft_error(f"expected a probability, got {describe(value)}", fix)
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise craft_error(f"probability {value!r} is not a finite number", fix)
        return Fraction(str(value))
    if _DECIMAL.match(value):
        return Fraction(value.strip())
    if _RATIO.match(value):
        num, den = (int(part) for part in value.split("/"))
        if den == 0:
            raise craft_error(f"probability {value!r} divides by zero", fix)
        return Fraction(num, den)
    raise craft_error(f"cannot read {describe(value)} as a probability", fix)


def parse_selector(value: Any) -> tuple[str, ...]:
    """A token, a category, ``"*"``, or a non-empty list of them."""
    fix = "write a token or category name, or a list of them such as [alice, NOUN]"
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list | tuple):
        raise craft_error(f"expected a token, a category or a list, got {describe(value)}", fix)
    if not value:
        raise craft_error("empty list: it would never match", fix)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise craft_error(f"item {i} is {describe(item)}, expected a name", fix)
    return tuple(value)


Probability = Annotated[Fraction, PlainValidator(parse_probability)]
Selector = Annotated[tuple[str, ...], PlainValidator(parse_selector)]
NextMap = dict[StrictStr, Probability]


class Strict(BaseModel):
    """Rejects unknown keys, naming the allowed ones (a field's YAML key is its alias,
    if it has one)."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = tuple(f.alias or name for name, f in cls.model_fields.items())
            for key in data:
                if key not in allowed:
                    raise PydanticCustomError(
                        "unknown_key", "unknown key", {"key": key, "allowed": allowed}
                    )
        return data
