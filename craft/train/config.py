"""The frozen training configuration and its validation.

Every field has the published default (2 layers x 4 heads, d_model 64, attention-only,
batch 256, sequence length 128 or the spec's ``max_len`` if smaller, AdamW lr 3e-3,
5000 steps, 5% linear warm-up then cosine decay). Fields left ``None`` are resolved
against the spec by :meth:`TrainConfig.resolve`; a bad value raises a one-line
:class:`~specs.errors.CraftError` naming the field and the fix.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

from specs.errors import CraftError
from specs.model import Spec

QKControl = Literal["clamp", "penalty", "none"]
Device = Literal["auto", "cpu", "cuda"]
DEFAULT_LENGTH = 128


def _fail(name: str, value: object, expected: str) -> None:
    raise CraftError(
        f"{name} is {value!r}, expected {expected}",
        where="train config",
        fix=f"pass {name.replace('_', '-')} {expected}",
    )


@dataclass(frozen=True)
class TrainConfig:
    """What to train and how.

    Attributes:
        family: ``standard`` or ``tensor``.
        n_layers, n_heads, d_model: model shape.
        d_head: head width; ``None`` means ``d_model // n_heads``.
        d_mlp: MLP width, 0 for attention-only.
        positions: ``learned``, ``rotary`` (tensor only) or ``none`` (no positional
            embedding: the model must derive position itself, e.g. from causal
            attention); ``None`` means rotary for the tensor family (the published
            setup) and learned for the standard one.
        steps: optimiser steps.
        batch: sequences per step, sampled fresh from the spec each step.
        length: tokens per sequence after BOS; ``None`` means ``min(128, max_len)``.
        lr: peak learning rate; ``min_lr_ratio`` is the floor of the cosine decay.
        warmup: linear warm-up steps; ``None`` means 5% of ``steps``.
        weight_decay, grad_clip, betas: AdamW and clipping settings (``grad_clip`` 0: off).
        seed: the run seed; init, every batch and the eval set derive from it.
        device: ``auto`` (cuda when available), ``cpu`` or ``cuda``.
        eval_every: steps between evaluations (log lines); ``None`` means ``max(10, steps //
            50)`` (an evaluation costs several steps: a short run must not evaluate each).
        eval_batch: sequences in the fixed held-out evaluation set.
        save_every: write a checkpoint every N steps (0: none).
        qk_init: tensor family: scale of W_Q1, W_K1, W_Q2, W_K2 at init, relative to
            the ``1/sqrt(d_model)`` standard deviation of the other projections.
        qk_control: tensor family: ``clamp`` rescales each head's W_Q1, W_K1, W_Q2, W_K2
            to Frobenius norm at most ``qk_max_norm`` after every step; ``penalty`` adds
            ``qk_penalty * sum ||W||_F^2`` of those matrices to the loss; ``none``.
        qk_max_norm: clamp bound; ``None`` means ``2 * qk_init * sqrt(d_head)``
            (twice the expected norm at init).
        qk_penalty: weight of the penalty.
    """

    family: Literal["standard", "tensor"] = "standard"
    n_layers: int = 2
    n_heads: int = 4
    d_model: int = 64
    d_head: int | None = None
    d_mlp: int = 0
    positions: Literal["learned", "rotary", "none"] | None = None
    steps: int = 5000
    batch: int = 256
    length: int | None = None
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int | None = None
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    seed: int = 0
    device: Device = "auto"
    eval_every: int | None = None
    eval_batch: int = 256
    save_every: int = 0
    qk_init: float = 1.0
    qk_control: QKControl = "clamp"
    qk_max_norm: float | None = None
    qk_penalty: float = 1e-4

    def __post_init__(self) -> None:
        if self.family not in ("standard", "tensor"):
            _fail("family", self.family, "'standard' or 'tensor'")
        for name in ("n_layers", "n_heads", "d_model", "steps", "batch", "eval_batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                _fail(name, value, "an integer >= 1")
        for name in ("d_mlp", "seed", "save_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                _fail(name, value, "an integer >= 0")
        for name in ("d_head", "length", "eval_every"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                _fail(name, value, "an integer >= 1")
        if self.positions not in (None, "learned", "rotary", "none"):
            _fail("positions", self.positions, "'learned', 'rotary' or 'none'")
        if self.positions == "rotary" and self.family != "tensor":
            _fail("positions", self.positions, "'learned' for the standard family")
        if self.device not in ("auto", "cpu", "cuda"):
            _fail("device", self.device, "'auto', 'cpu' or 'cuda'")
        if self.qk_control not in ("clamp", "penalty", "none"):
            _fail("qk_control", self.qk_control, "'clamp', 'penalty' or 'none'")
        self._check_numbers()

    def _check_numbers(self) -> None:
        def finite(x: object) -> bool:
            return isinstance(x, int | float) and math.isfinite(x)

        for name in ("lr", "qk_init"):
            if not finite(getattr(self, name)) or getattr(self, name) <= 0:
                _fail(name, getattr(self, name), "a number > 0")
        for name in ("weight_decay", "grad_clip", "qk_penalty"):
            if not finite(getattr(self, name)) or getattr(self, name) < 0:
                _fail(name, getattr(self, name), "a number >= 0")
        if not finite(self.min_lr_ratio) or not 0 <= self.min_lr_ratio <= 1:
            _fail("min_lr_ratio", self.min_lr_ratio, "a number in [0, 1]")
        if not all(finite(b) and 0 <= b < 1 for b in self.betas) or len(self.betas) != 2:
            _fail("betas", self.betas, "two numbers in [0, 1)")
        if self.qk_max_norm is not None and (not finite(self.qk_max_norm) or self.qk_max_norm <= 0):
            _fail("qk_max_norm", self.qk_max_norm, "a number > 0")
        if self.warmup is not None:
            if not isinstance(self.warmup, int) or self.warmup < 0:
                _fail("warmup", self.warmup, "an integer >= 0")
            if self.warmup >= self.steps:
                _fail("warmup", self.warmup, f"fewer than steps ({self.steps})")
        if self.d_head is None and self.d_model % self.n_heads:
            _fail(
                "d_head",
                None,
                f"set explicitly: d_model {self.d_model} is not a "
                f"multiple of n_heads {self.n_heads}",
            )
        if self.positions == "rotary" and self.resolved_d_head % 2:
            _fail("d_head", self.resolved_d_head, "an even number for rotary positions")

    @property
    def resolved_d_head(self) -> int:
        return self.d_head if self.d_head is not None else self.d_model // self.n_heads

    def resolve(self, spec: Spec) -> TrainConfig:
        """Fill every ``None`` field from the spec and the other fields.

        Raises:
            CraftError: a length above the spec's ``max_len``.
        """
        length = self.length if self.length is not None else min(DEFAULT_LENGTH, spec.max_len)
        if length > spec.max_len:
            raise CraftError(
                f"length is {length}, more than the spec's max_len {spec.max_len}",
                where=f"train config ({spec.name})",
                fix=f"pass --length at most {spec.max_len}",
            )
        positions = self.positions or ("rotary" if self.family == "tensor" else "learned")
        d_head = self.resolved_d_head
        if positions == "rotary" and d_head % 2:
            positions = "learned"  # the default cannot apply; an explicit rotary failed above
        qk_max = self.qk_max_norm or 2.0 * self.qk_init * math.sqrt(d_head)
        return replace(
            self,
            d_head=d_head,
            positions=positions,
            length=length,
            warmup=self.warmup if self.warmup is not None else self.steps // 20,
            eval_every=self.eval_every or max(10, self.steps // 50),
            qk_max_norm=qk_max,
        )

    def to_json(self) -> dict:
        out = asdict(self)
        out["betas"] = list(self.betas)
        return out

    @staticmethod
    def field_names() -> tuple[str, ...]:
        return tuple(f.name for f in fields(TrainConfig))
