"""The one frozen config shared by both model families."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

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
        if self.family not in ("standard", "tensor"):
            raise CraftError(
                f"unknown model family {self.family!r}", fix="use 'standard' or 'tensor'"
            )
        for name in ("n_layers", "d_mlp"):
            if getattr(self, name) < 0:
                raise CraftError(f"config.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("n_heads", "d_model", "d_head", "n_vocab", "n_out", "n_ctx"):
            if getattr(self, name) < 1:
                raise CraftError(f"config.{name} must be >= 1, got {getattr(self, name)}")
        if self.positions not in ("learned", "rotary", "none"):
            raise CraftError(f"unknown positions {self.positions!r}")
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
    def from_json(obj: dict) -> ModelConfig:
        known = set(ModelConfig.__dataclass_fields__)
        unknown = set(obj) - known
        if unknown:
            raise CraftError(f"model config has unknown fields {sorted(unknown)}")
        return ModelConfig(**obj)
