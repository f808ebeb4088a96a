"""Ctrl-C and SIGTERM: one line on stderr, exit 130 (143 for SIGTERM), nothing half-written.

Python turns Ctrl-C (SIGINT) into KeyboardInterrupt; :func:`signals_as_interrupts`
does the same for SIGTERM, so the ``finally`` blocks of every write run in both cases
and :func:`craft.models.io.atomic_write` removes its temporary file. A command that
keeps something useful when stopped (``craft train``: the log, complete checkpoints)
raises ``KeyboardInterrupt(what_was_kept)``; :func:`interrupted_line` prints it.

Example:
    >>> interrupted_line(KeyboardInterrupt(), [])
    ('craft: interrupted (Ctrl-C); no output was left half-written', 130)
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130, the shell's code for Ctrl-C


@contextmanager
def signals_as_interrupts() -> Iterator[list[int]]:
    """While inside, SIGTERM raises KeyboardInterrupt; yields the signals received."""
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield received  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_line(e: KeyboardInterrupt, received: list[int]) -> tuple[str, int]:
    """The one line to print and the exit code for an interrupt."""
    terminated = signal.SIGTERM in received
    how = "terminated (SIGTERM)" if terminated else "interrupted (Ctrl-C)"
    kept = str(e.args[0]) if e.args else "no output was left half-written"
    code = 128 + signal.SIGTERM if terminated else EXIT_INTERRUPTED
    return f"craft: {how}; {kept}", code
