"""argparse value types shared by every ``craft`` subcommand (errors name the bound)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def int_at_least(lo: int) -> Callable[[str], int]:
    """An integer ``>= lo``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}")
        return value

    return parse


def positive_int(text: str) -> int:
    """An integer ``>= 1``."""
    return int_at_least(1)(text)


def _number(text: str) -> float | None:
    """``text`` as a finite float, else None (``nan`` and ``inf`` are not numbers here)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def positive_float(text: str) -> float:
    """A finite number ``> 0``."""
    value = _number(text)
    if value is None or not value > 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def float_in(lo: float, hi: float) -> Callable[[str], float]:
    """A finite number ``lo < x <= hi``."""

    def parse(text: str) -> float:
        value = _number(text)
        if value is None or not lo < value <= hi:
            raise argparse.ArgumentTypeError(
                f"expected a number > {lo:g} and <= {hi:g}, got {text!r}"
            )
        return value

    return parse


def fraction(text: str) -> float:
    """A fraction ``p`` with ``0 < p <= 1``."""
    value = _number(text)
    if value is None or not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction 0 < p <= 1, got {text!r}")
    return value


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """``--help`` that appends ``(default: X)`` to every option with a default worth
    stating (not None, not False: those say their meaning in their help text)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or not action.option_strings:
            return text
        if action.default in (None, False, argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"
