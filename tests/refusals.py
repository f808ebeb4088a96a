"""Helpers for tests of refused commands: one error line, no traceback, inputs untouched.

A refused command must exit with code 2 and print exactly one ``craft: error:`` line on
stderr (warnings aside) naming what is wrong; every file in the folder it worked in must
be byte-identical afterwards, and no file may be added (no temp file, no half-written
output).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from craft.cli import main

# a one-rule spec whose vocabulary no library model shares
COIN = """\
format: craft-spec/1
name: coin
vocab: {SIDE: [heads, tails]}
max_len: 6
start: {SIDE: 1}
rules:
  - name: biased
    bigram: {"*": {heads: 0.7, tails: 0.3}}
"""


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """``craft ARGV`` in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(code: int, err: str, *needles: str) -> str:
    """The one ``craft: error:`` line of a refused command; asserts exit code 2, no
    traceback, no other line but warnings, and every needle in the line."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [x for x in err.strip().splitlines() if not x.startswith("craft: warning: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("craft: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative path (symlinks as their target)."""
    return {
        str(p.relative_to(folder)): (
            f"-> {p.readlink()}" if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file() or p.is_symlink()
    }
