"""A size budget: ``--shape LxHxD`` (layers x heads per layer x d_model), ``--d-head``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from specs.errors import CraftError

_SHAPE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shape:
    """Layers, heads per layer, residual width and head width of a compact model.

    ``d_head`` defaults to ``d_model // n_heads`` (the usual convention of trained models).
    """

    n_layers: int
    n_heads: int
    d_model: int
    d_head: int

    def __post_init__(self) -> None:
        for name in ("n_layers", "n_heads", "d_model", "d_head"):
            if getattr(self, name) < (0 if name == "n_layers" else 1):
                raise CraftError(
                    f"{name} must be >= 1, got {getattr(self, name)}",
                    where="--shape",
                    fix="give LAYERSxHEADSxD_MODEL with positive numbers, e.g. 2x4x64",
                )

    @staticmethod
    def parse(text: str, d_head: int | None = None) -> Shape:
        m = _SHAPE.match(text or "")
        if not m:
            raise CraftError(
                f"cannot read {text!r} as a shape",
                where="--shape",
                fix="give LAYERSxHEADSxD_MODEL, e.g. --shape 2x4x64",
            )
        layers, heads, d_model = (int(g) for g in m.groups())
        if heads < 1:
            raise CraftError("heads must be >= 1", where="--shape", fix="e.g. --shape 2x4x64")
        return Shape(layers, heads, d_model, d_head or max(1, d_model // heads))

    def __str__(self) -> str:
        return f"{self.n_layers}x{self.n_heads}x{self.d_model} (d_head {self.d_head})"
