"""One table of Tracr's library programs, used by the tests, the benchmark and the CLI.

Each :class:`LibProgram` builds one ``make_*`` program of ``tracr.compiler.lib`` for a
given ``max_len`` (``make_sort`` and ``make_sort_freq`` depend on it) with the
vocabulary Tracr's own test cases (``tracr/compiler/test_cases.py``) use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LibProgram:
    """A named library program: ``build(max_len)`` returns the RASP SOp."""

    name: str
    build: Callable[[int], Any]
    vocab: frozenset


def _programs() -> tuple[LibProgram, ...]:
    from tracr.compiler import lib
    from tracr.rasp import rasp

    abcd = frozenset("abcd")
    nums = frozenset({1, 2, 3, 4})
    return (
        LibProgram("length", lambda n: rasp.categorical(lib.make_length()), abcd),
        LibProgram("length_numerical", lambda n: rasp.numerical(lib.make_length()), abcd),
        LibProgram("reverse", lambda n: lib.make_reverse(rasp.tokens), abcd),
        LibProgram(
            "pair_balance",
            lambda n: lib.make_pair_balance(rasp.tokens, "(", ")"),
            frozenset("abc()"),
        ),
        LibProgram("shuffle_dyck2", lambda n: lib.make_shuffle_dyck2(), frozenset("(){}")),
        LibProgram(
            "shuffle_dyck3",
            lambda n: lib.make_shuffle_dyck(pairs=["()", "{}", "[]"]),
            frozenset("(){}[]"),
        ),
        LibProgram("hist", lambda n: lib.make_hist(), abcd),
        LibProgram("sort_unique", lambda n: lib.make_sort_unique(rasp.tokens, rasp.tokens), nums),
        LibProgram(
            "sort",
            lambda n: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=n, min_key=1),
            nums,
        ),
        LibProgram("sort_freq", lambda n: lib.make_sort_freq(max_seq_len=n), nums),
        LibProgram(
            "frac_prevs", lambda n: lib.make_frac_prevs(rasp.tokens == "l"), frozenset("helo")
        ),
        LibProgram("count_less_freq", lambda n: lib.make_count_less_freq(n=2), abcd),
        LibProgram("count", lambda n: lib.make_count(rasp.tokens, "a"), frozenset("abc")),
        LibProgram(
            "nary_sequencemap",
            lambda n: lib.make_nary_sequencemap(
                lambda x, y, z: x + y - z, rasp.tokens, rasp.tokens, rasp.indices
            ),
            frozenset({1, 2, 3}),
        ),
        LibProgram("shift_by", lambda n: lib.shift_by(1, rasp.tokens), abcd),
        LibProgram(
            "detect_pattern", lambda n: lib.detect_pattern(rasp.tokens, "abc"), frozenset("abc")
        ),
    )


def lib_programs() -> tuple[LibProgram, ...]:
    """Every ``make_*`` program of ``tracr.compiler.lib`` (imports Tracr)."""
    from craft.tracr._deps import require_tracr

    require_tracr()
    return _programs()
