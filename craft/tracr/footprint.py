"""The memory a Tracr compile will take, estimated from small pilot compiles first.

Tracr builds every MLP and attention matrix over its value sets with dense numpy arrays
(``vectorspace_fns.Linear.from_action`` stacks one basis vector per input direction), so
its peak grows as a power of ``max_len`` whose exponent depends on the program: about 2
for ``lib:sort``, 3 for ``lib:length`` and ``lib:hist``, 3.4 for ``lib:reverse``
(measured, ``benchmarks/memory.py``). No closed form covers every program, so
:func:`estimate` measures: after a warm-up compile it compiles the program at ``max_len
/ 2**k``, ..., ``max_len / 4``, ``max_len / 2`` (from 8 up, stopping at the first pilot
slower than :data:`PILOT_SECONDS`), records each pilot's numpy peak (tracemalloc) and
the converted model's size, fits a power law through the last two pilots and
extrapolates both to the requested ``max_len``. The pilots cost a small fraction of the
compile they guard (at most a few seconds); below :data:`PILOT_FROM` nothing is
estimated (under ~10 MB).
"""

from __future__ import annotations

import logging
import math
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PILOT_FROM = 64  # below this max_len a compile takes too little memory to estimate
PILOT_SECONDS = 0.5  # a pilot slower than this is the last one


@dataclass(frozen=True)
class Pilot:
    """One pilot compile: its ``max_len``, numpy peak and model size, in bytes."""

    max_len: int
    numpy_peak: int
    model_bytes: int


@dataclass(frozen=True)
class Estimate:
    """The extrapolated footprint of the real compile.

    Attributes:
        max_len: the requested length.
        pilots: the pilot compiles it was fitted on.
        bytes: numpy peak plus model size at ``max_len``, in bytes.
        exponent: the fitted power of ``max_len`` of the numpy peak.
    """

    max_len: int
    pilots: tuple[Pilot, ...]
    bytes: int
    exponent: float


def _pilot(compile_at: Callable[[int], Any], max_len: int) -> tuple[Pilot, float]:
    start = time.perf_counter()
    tracemalloc.start()
    logging.disable(logging.WARNING)  # Tracr's warnings come once, from the real compile
    try:
        model = compile_at(max_len)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        logging.disable(logging.NOTSET)
    size = model.model.n_params() * 4
    return Pilot(max_len, peak, size), time.perf_counter() - start


def _extrapolate(a: float, b: float, la: int, lb: int, target: int) -> tuple[float, float]:
    """``b * (target / lb) ** k`` with ``k`` the log-log slope from (la, a) to (lb, b),
    at least 1 (no footprint shrinks as inputs grow)."""
    k = max(math.log(max(b, 1) / max(a, 1)) / math.log(lb / la), 1.0)
    return b * (target / lb) ** k, k


def _lengths(max_len: int) -> list[int]:
    """Pilot lengths: ``max_len // 2``, ``// 4``, ... down to 8, smallest first (the last
    two pilots, the longest, are the ones extrapolated from)."""
    lengths, length = [], max_len // 2
    while length >= 8:
        lengths.append(length)
        length //= 2
    return lengths[::-1]


def estimate(compile_at: Callable[[int], Any], max_len: int) -> Estimate | None:
    """Estimate the footprint of ``compile_at(max_len)`` from pilots at smaller lengths.

    Args:
        compile_at: compiles the program for a ``max_len`` and returns the TracrModel.
        max_len: the length the real compile is for.

    Returns:
        The estimate, or None below :data:`PILOT_FROM` or when a pilot fails (the real
        compile then reports the error itself).
    """
    if max_len < PILOT_FROM:
        return None
    pilots: list[Pilot] = []
    try:
        _pilot(compile_at, 4)  # warm-up: Tracr's first compile imports and caches
        for length in _lengths(max_len):
            pilot, seconds = _pilot(compile_at, length)
            pilots.append(pilot)
            if seconds > PILOT_SECONDS and len(pilots) >= 2:
                break
    except Exception:  # noqa: BLE001 - a program may not compile at a short length
        return None
    if len(pilots) < 2:
        return None
    a, b = pilots[-2], pilots[-1]
    peak, k = _extrapolate(a.numpy_peak, b.numpy_peak, a.max_len, b.max_len, max_len)
    size, _ = _extrapolate(a.model_bytes, b.model_bytes, a.max_len, b.max_len, max_len)
    return Estimate(max_len, tuple(pilots), int(peak + size), k)
