"""Learning-rate schedule: linear warm-up, then cosine decay to a floor.

``lr(step) = peak * warm(step) * decay(step)`` with
``warm = min(1, (step + 1) / warmup)`` and
``decay = floor + (1 - floor) * (1 + cos(pi * progress)) / 2``, where ``progress`` runs
from 0 at the end of warm-up to 1 at the last step. Both factors are at most 1 by
construction, so the rate can never exceed the peak (the "max instead of min" bug that
makes the loss spike after warm-up cannot be written here).
"""

from __future__ import annotations

import math

from specs.errors import CraftError


def check_schedule(steps: int, warmup: int, floor: float) -> None:
    """Raise a one-line CraftError for a schedule that cannot be meant.

    Raises:
        CraftError: ``steps < 1``, ``warmup`` outside ``0..steps-1``, or a floor outside [0, 1].
    """
    if steps < 1:
        raise CraftError(
            f"steps is {steps}, expected >= 1", where="schedule", fix="pass --steps >= 1"
        )
    if not 0 <= warmup < steps:
        raise CraftError(
            f"warmup is {warmup} for {steps} steps: the decay would never start",
            where="schedule",
            fix=f"pass --warmup in 0..{steps - 1} (default 5% of the steps)",
        )
    if not 0.0 <= floor <= 1.0:
        raise CraftError(f"lr floor ratio is {floor}, expected [0, 1]", where="schedule")


def lr_factor(step: int, steps: int, warmup: int, floor: float) -> float:
    """The multiplier of the peak rate at ``step`` (0-based), in ``[0, 1]``.

    Args:
        step: the optimiser step about to be taken, ``0..steps-1``.
        steps: total steps.
        warmup: linear warm-up steps (0: none).
        floor: the decay ends at ``floor`` times the peak.
    """
    check_schedule(steps, warmup, floor)
    warm = 1.0 if warmup == 0 else min(1.0, (step + 1) / warmup)
    span = max(1, steps - 1 - warmup)
    progress = min(1.0, max(0.0, (step - warmup) / span))
    decay = floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return warm * decay


def lr_at(step: int, peak: float, steps: int, warmup: int, floor: float) -> float:
    """The learning rate at ``step``: ``peak * lr_factor(...)``, never above ``peak``."""
    return peak * lr_factor(step, steps, warmup, floor)
