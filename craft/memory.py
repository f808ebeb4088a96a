"""Memory: estimate what a command needs before allocating it; refuse what will not fit.

Every command that can be asked for an unbounded amount of memory by a small input (a
200,000-token vocabulary, ``sample -n 10**11``, ``tracr --max-len 100000``) calls
:func:`require` with an estimate before it allocates. The limit is what the machine
has free now (``MemAvailable``, and a cgroup's ``memory.max`` where one is set), or
``--max-memory SIZE`` (every subcommand takes it; ``craft.cli.main`` sets it with
:func:`limited`). Over the limit, the command stops with one line giving the estimate,
the limit and the fix. The estimates and how close they come to measured peaks are in
``benchmarks/memory.py``.

Example:
    >>> with limited(parse_size("1M")):
    ...     require("sampling", 3 * 2**20, "pass a smaller -n")
    Traceback (most recent call last):
    specs.errors.CraftError: sampling needs about 3.0 MiB of memory, over the 1.0 MiB ...
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from specs.errors import CraftError

_LIMIT: ContextVar[int | None] = ContextVar("craft_memory_limit", default=None)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``4G``, ``512M``, ``1.5GiB``, ``1000000`` (bytes) -> bytes; an argparse type."""
    match = _SIZE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected a size such as 4G or 512M, got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def fmt(n: float) -> str:
    """Bytes as the largest binary unit that keeps one digit before the point."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        size = _UNITS[unit[0]]
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def available_bytes() -> int:
    """Memory this process can take now: ``MemAvailable``, capped by a cgroup limit."""
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except OSError:
        pass
    if free is None:  # not Linux: physical memory
        free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        cap = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if cap.isdigit():
            free = min(free, int(cap))
    except OSError:
        pass
    return free


@contextmanager
def limited(max_bytes: int | None) -> Iterator[None]:
    """Within: :func:`require` compares with ``max_bytes`` (None: what is available)."""
    token = _LIMIT.set(max_bytes)
    try:
        yield
    finally:
        _LIMIT.reset(token)


def require(doing: str, needed: int, fix: str) -> None:
    """Raise CraftError when ``needed`` bytes exceed the limit.

    Args:
        doing: what needs the memory (``sampling``, ``a model of 4e10 parameters``).
        needed: the estimate, in bytes.
        fix: how to ask for less.
    """
    given = _LIMIT.get()
    limit = available_bytes() if given is None else given
    if needed <= limit:
        return
    where = "--max-memory" if given is not None else "memory available on this machine"
    raise CraftError(
        f"{doing} needs about {fmt(needed)} of memory, over the {fmt(limit)} of {where}",
        fix=f"{fix}, or raise --max-memory if the machine has more",
    )
