"""Finding the RASP program a user names, and parsing a vocabulary.

A program spec is one of:

* ``path/to/file.py:NAME`` - the user's own Python file, imported with importlib (it
  is the user's code, run by design, as ``python file.py`` would);
* ``package.module:NAME`` - an importable module (``tracr.compiler.lib:make_hist``);
* ``lib:NAME`` - a program of :mod:`craft.tracr.library` (Tracr's ``make_*`` programs,
  with the vocabulary Tracr's tests use).

``NAME`` is an SOp or a function returning one; a function may take ``max_len`` and
``vocab`` keyword arguments (passed when its signature names them).

Whatever the user's code raises while it is imported, called or compiled by Tracr
(any exception, and ``SystemExit`` too: the user's ``sys.exit()`` must not end ``craft``
silently with its code) becomes one :class:`CraftError` naming the program, the
exception and the innermost line of user code (:func:`raised`). Only Ctrl-C passes.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
import traceback
from pathlib import Path
from typing import Any

from specs.errors import CraftError

_INT = re.compile(r"^-?\d+$")
_LIBRARY_CODE = (str(Path(__file__).parents[1]), "site-packages", "<frozen ")

RUN_IT = "run the program with python to see the whole error"
UserFault = (Exception, SystemExit)  # what user code may raise; KeyboardInterrupt passes


def raised(e: BaseException, doing: str, spec: str, fix: str) -> CraftError:
    """One line for an exception from user code: ``doing raised Type: message (at
    file.py:7)``, the location being the innermost frame outside craft and installed
    packages (the user's own line), when there is one."""
    frames = [
        f
        for f in traceback.extract_tb(e.__traceback__)
        if not any(part in f.filename for part in _LIBRARY_CODE)
    ]
    at = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    text = f": {e}" if str(e) else ""
    return CraftError(f"{doing} raised {type(e).__name__}{text}{at}", where=spec, fix=fix)


def parse_vocab(text: str) -> set:
    """``"a,b,c"`` -> ``{"a", "b", "c"}``; all-integer lists become ints (``"1,2"``)."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise CraftError(f"--vocab {text!r} has an empty token", fix="write tokens as a,b,c")
    if len(set(items)) != len(items):
        dup = sorted({t for t in items if items.count(t) > 1})
        raise CraftError(f"--vocab repeats {dup}", fix="list each token once")
    if all(_INT.match(t) for t in items):
        return {int(t) for t in items}
    return set(items)


def _import_file(path: Path, spec: str) -> Any:
    if not path.is_file():
        raise CraftError(f"no such file {str(path)!r}", where=spec, fix="check the path")
    name = f"_craft_tracr_user_{abs(hash(str(path.resolve())))}"
    mod_spec = importlib.util.spec_from_file_location(name, path)
    if mod_spec is None or mod_spec.loader is None:
        raise CraftError(f"cannot import {str(path)!r}", where=spec, fix="name a .py file")
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[name] = module
    try:
        mod_spec.loader.exec_module(module)
    except UserFault as e:  # the user's file may raise anything while importing
        sys.modules.pop(name, None)
        raise raised(e, f"importing {str(path)!r}", spec, RUN_IT) from None
    return module


def _import_module(name: str, spec: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise CraftError(
            f"cannot import module {name!r} ({e})",
            where=spec,
            fix="write path/to/file.py:NAME or an importable module:NAME",
        ) from None
    except UserFault as e:
        raise raised(e, f"importing module {name!r}", spec, RUN_IT) from None


def _call(fn: Any, spec: str, max_len: int, vocab: set) -> Any:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs = {k: v for k, v in (("max_len", max_len), ("vocab", vocab)) if k in params}
    name = getattr(fn, "__name__", fn)
    try:
        return fn(**kwargs)
    except TypeError as e:
        raise CraftError(
            f"calling {name!r} failed: {e}",
            where=spec,
            fix="make it callable with no arguments (or with max_len=, vocab=)",
        ) from None
    except UserFault as e:
        raise raised(e, f"calling {name!r}", spec, RUN_IT) from None


def load_program(spec: str, *, max_len: int, vocab: set | None = None) -> tuple[Any, set | None]:
    """The RASP SOp a spec names, and the library vocabulary for ``lib:`` specs (else None)."""
    from craft.tracr._deps import require_tracr

    rasp = require_tracr().rasp
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise CraftError(
            "a program is FILE.py:NAME, module:NAME or lib:NAME",
            where=spec,
            fix="e.g. my_programs.py:make_program",
        )
    default_vocab = None
    if target == "lib":
        from craft.tracr.library import lib_programs

        table = {p.name: p for p in lib_programs()}
        if attr not in table:
            raise CraftError(
                f"no library program {attr!r}", where=spec, fix=f"use one of {sorted(table)}"
            )
        entry = table[attr]
        return entry.build(max_len), set(entry.vocab)
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = _import_file(Path(target), spec)
    else:
        module = _import_module(target, spec)
    if not hasattr(module, attr):
        names = sorted(n for n in vars(module) if not n.startswith("_"))
        raise CraftError(
            f"{target!r} defines no {attr!r}", where=spec, fix=f"use one of {names[:20]}"
        )
    obj = getattr(module, attr)
    if not isinstance(obj, rasp.SOp) and callable(obj):
        obj = _call(obj, spec, max_len, vocab if vocab is not None else set())
    if not isinstance(obj, rasp.SOp):
        raise CraftError(
            f"{attr!r} is a {type(obj).__name__}, not a RASP SOp",
            where=spec,
            fix="name an SOp or a function returning one",
        )
    return obj, default_vocab
