"""The one frozen config shared by both model families."""

from __future__ import annotations

import reprlib
import sys
from dataclasses import asdict, dataclass
from typing import Any, Literal

from specs.errors import CraftError

Family = Literal["standard", "tensor"]
Positions = Literal["learned", "rotary", "none"]


@dataclass(frozen=True)
class ModelConfig:
    """Shape and behaviour of a model.

    Attributes:
        family: ``standard`` (softmax attention, ReLU MLPs) or ``tensor`` (bilinear
            attention and bilinear MLPs, no softmax inside).
        n_layers: blocks (attention then optional MLP each).
        n_heads, d_head: heads per layer and their width (shared by all heads).
        d_model: residual width.
        d_mlp: MLP hidden width; 0 means attention-only.
        n_vocab: input vocabulary including BOS (BOS id = ``n_vocab - 1`` for crafted models).
        n_out: output logits (the spec's vocabulary, BOS excluded).
        n_ctx: positions (``max_len + 1``: BOS at position 0).
        causal: causal mask; Tracr models are bidirectional (False).
        positions: ``learned`` table, ``rotary`` (tensor family: on q1,k1,q2,k2), or ``none``.
        rotary_base: base of the rotary frequencies.
        bias: whether MLP and attention projections carry biases (standard family only).
    """

    family: Family
    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    n_vocab: int
    n_out: int
    n_ctx: int
    causal: bool = True
    positions: Positions = "learned"
    rotary_base: float = 10000.0
    bias: bool = True

    def __post_init__(self) -> None:
        fix = "a model config comes from craft compile, train or import: re-create the model"
        if self.family not in ("standard", "tensor"):
            raise CraftError(
                f"unknown model family {self.family!r} in the model config",
                fix="use 'standard' or 'tensor'",
            )
        for name in ("n_layers", "d_mlp"):
            if getattr(self, name) < 0:
                raise CraftError(f"config.{name} must be >= 0, got {getattr(self, name)}", fix=fix)
        for name in ("n_heads", "d_model", "d_head", "n_vocab", "n_out", "n_ctx"):
            if getattr(self, name) < 1:
                raise CraftError(f"config.{name} must be >= 1, got {getattr(self, name)}", fix=fix)
        if self.positions not in ("learned", "rotary", "none"):
            raise CraftError(
                f"unknown positions {self.positions!r} in the model config",
                fix="use 'learned', 'rotary' or 'none'",
            )
        if self.positions == "rotary" and (self.family != "tensor" or self.d_head % 2):
            raise CraftError(
                "rotary positions need the tensor family and an even d_head",
                fix="use positions='learned'",
            )
        if self.family == "tensor" and self.bias:
            object.__setattr__(self, "bias", False)  # polynomial network: no biases

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(obj: Any, where: str = "model config") -> ModelConfig:
        """Read :meth:`to_json`'s dict, checking every field's type and range first.

        A model file is input like any other: ``n_layers: "2"``, ``2.5``, ``true`` or
        ``10**12`` must be an error here, not a TypeError or an allocation later.

        Args:
            obj: the JSON object.
            where: names the config in errors (e.g. ``"m.safetensors: header config"``).

        Raises:
            CraftError: not an object, missing or unknown fields, a field of the wrong
                type or out of range, or a combination the model cannot have.
        """
        if not isinstance(obj, dict):
            raise CraftError(
                f"is a {type(obj).__name__}, not an object", where=where, fix=_REEXPORT
            )
        fields = ModelConfig.__dataclass_fields__
        unknown = sorted(map(str, set(obj) - set(fields)))
        missing = [k for k in _REQUIRED if k not in obj]
        if unknown or missing:
            wrong = [f"unknown fields {unknown}"] * bool(unknown)
            raise CraftError(
                " and ".join(wrong + [f"missing fields {missing}"] * bool(missing)),
                where=where,
                fix=f"a config has the fields {', '.join(fields)}; {_REEXPORT}",
            )
        for name, value in obj.items():
            _check_field(name, value, where)
        try:
            return ModelConfig(**obj)
        except CraftError as e:  # a combination __post_init__ refuses: name the config
            raise CraftError(str(e), where=where) from None


MAX_SIZE = 2**31 - 1  # no size of a model read from a file exceeds a 32-bit count
_REEXPORT = "re-export the model with craft (compile, import or train)"
_REQUIRED = ("family", "n_layers", "n_heads", "d_model", "d_head", "d_mlp", "n_vocab")
_REQUIRED += ("n_out", "n_ctx")
_MIN_SIZE = {"n_layers": 0, "d_mlp": 0, "n_heads": 1, "d_model": 1, "d_head": 1}
_MIN_SIZE |= {"n_vocab": 1, "n_out": 1, "n_ctx": 1}
_CHOICES = {"family": ("standard", "tensor"), "positions": ("learned", "rotary", "none")}


def _check_field(name: str, value: Any, where: str) -> None:
    """One config field from a file: an int in range, a bool, a choice or a positive float."""
    if name in _MIN_SIZE:
        low = _MIN_SIZE[name]
        if isinstance(value, bool) or not isinstance(value, int):
            bad, want = (
                f"is {reprlib.repr(value)} (a {type(value).__name__})",
                f"an integer >= {low}",
            )
        elif not low <= value <= MAX_SIZE:
            bad, want = f"is {value}", f"an integer from {low} to {MAX_SIZE}"
        else:
            return
    elif name in _CHOICES:
        if value in _CHOICES[name] and isinstance(value, str):
            return
        bad, want = f"is {reprlib.repr(value)}", " or ".join(map(repr, _CHOICES[name]))
    elif name in ("causal", "bias"):
        if isinstance(value, bool):
            return
        bad, want = f"is {reprlib.repr(value)}", "true or false"
    else:  # rotary_base
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and 0 < value <= sys.float_info.max:  # NaN compares False; huge ints too
            return
        bad, want = f"is {reprlib.repr(value)}", "a positive finite number"
    raise CraftError(f"{name} {bad}", where=where, fix=f"{name} must be {want}; {_REEXPORT}")
