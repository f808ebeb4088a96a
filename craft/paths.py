"""No output path may overwrite an input: the check every writing subcommand runs first.

Two paths are the same file when they resolve to the same place (symlinks followed) or,
when both exist, name the same inode (:func:`os.path.samefile`: hard links count). A
command lists its inputs and outputs by the argument that names them; the first output
that is an input, or another output, stops the command with one line naming both
arguments and the fix, before anything is read or written. ``compile``, ``train`` and
``diff`` call :func:`refuse_overwrites` themselves; ``import`` and ``tracr``, defined in
modules of their own, are wrapped by :func:`guarded` with :func:`import_paths` and
:func:`tracr_paths`.

Example:
    >>> refuse_overwrites([PathArg("SPEC", "my.yaml")], [PathArg("-o", "my.yaml", "the model")])
    Traceback (most recent call last):
    specs.errors.CraftError: -o my.yaml is the same file as SPEC my.yaml; ...
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from specs.errors import CraftError


@dataclass(frozen=True)
class PathArg:
    """A path a command reads or writes, and the argument that names it.

    Attributes:
        arg: the argument as the user types it (``SPEC``, ``-o``, ``--log``).
        path: the path given.
        what: for an output, what is written there (``the model``, ``the log``).
    """

    arg: str
    path: str | Path
    what: str = "the output"


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name the same file: the same inode when both exist, else
    the same resolved path (an output not written yet can still be another one)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # one does not exist (yet), or an unusable name
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_overwrites(inputs: Sequence[PathArg], outputs: Sequence[PathArg]) -> None:
    """Raise CraftError when an output is an input or an earlier output.

    Raises:
        CraftError: naming both arguments and where to write instead.
    """
    for i, out in enumerate(outputs):
        for source in inputs:
            if same_file(out.path, source.path):
                raise CraftError(
                    f"{out.arg} {out.path} is the same file as {source.arg} {source.path}; "
                    f"writing {out.what} there would destroy the input",
                    fix=f"write {out.what} elsewhere",
                )
        for other in outputs[:i]:
            if same_file(out.path, other.path):
                raise CraftError(
                    f"{out.arg} {out.path} is the same file as {other.arg} {other.path}; "
                    f"{out.what} would overwrite {other.what}",
                    fix=f"write {out.what} elsewhere",
                )


Paths = Callable[[argparse.Namespace], tuple[list[PathArg], list[PathArg]]]


def import_paths(args: argparse.Namespace) -> tuple[list[PathArg], list[PathArg]]:
    """``craft import FILE -o OUT``: reads FILE, writes OUT."""
    return [PathArg("FILE", args.file)], [PathArg("-o", args.output, "the model")]


def tracr_paths(args: argparse.Namespace) -> tuple[list[PathArg], list[PathArg]]:
    """``craft tracr FILE.py:NAME [-o OUT]``: reads FILE.py (a program named by a path, as
    :func:`craft.tracr.program.load_program` decides; not ``module:NAME`` or ``lib:NAME``)."""
    target = args.program.rpartition(":")[0]
    is_file = target.endswith(".py") or "/" in target or "\\" in target
    inputs = [PathArg("PROGRAM", target)] if is_file else []
    return inputs, [PathArg("-o", args.output, "the model")] if args.output else []


def guarded(run: Callable[[argparse.Namespace], int], paths: Paths):
    """``run`` of a subcommand defined elsewhere, after :func:`refuse_overwrites` on the
    inputs and outputs ``paths`` reads from its arguments."""

    def guarded_run(args: argparse.Namespace) -> int:
        refuse_overwrites(*paths(args))
        return run(args)

    return guarded_run
