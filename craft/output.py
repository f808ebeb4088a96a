"""What every ``craft`` command prints: rich tables, warnings, and ``--json`` documents.

One place for the conventions: a console without markup (names from specs may contain
brackets), ``craft: warning: ...`` lines on stderr, and one JSON object per ``--json``
run with a format tag, the model and the spec it concerns (:func:`emit`), strict JSON
(NaN and infinities print as null).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from rich.console import Console


def new_console() -> Console:
    """A console on the current ``sys.stdout`` (pytest's capsys too), no markup."""
    width = None if sys.stdout.isatty() else 120
    return Console(file=sys.stdout, markup=False, highlight=False, width=width)


def emit(command: str, obj: dict, *, model: str | None = None, spec=None) -> None:
    """Print one ``--json`` document in the convention of every craft command: a format
    tag (``craft-<command>/1``), the model file and the spec (``{name, sha256}``) it
    concerns, then the result."""
    head: dict[str, Any] = {"format": f"craft-{command}/1"}
    if model is not None:
        head["model"] = model
    if spec is not None:
        head["spec"] = {"name": spec.name, "sha256": spec.sha256}
    print_json(head | obj)


def print_json(obj: Any) -> None:
    """Strict JSON: a NaN or infinite figure (a diverged model) prints as null."""
    print(json.dumps(finite(obj), indent=2, allow_nan=False))


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def warn(message: str) -> None:
    """One ``craft: warning:`` line on stderr."""
    print(f"craft: warning: {' '.join(message.split())}", file=sys.stderr)


def warn_other_spec(model, spec, model_path: str, spec_path: str, doing: str) -> None:
    """Warn when ``model`` says it was compiled from a spec with another hash."""
    stated = (model.meta.get("spec") or {}).get("sha256")
    if stated and stated != spec.sha256:
        warn(
            f"{model_path} was compiled from a spec with sha256 {stated[:16]}..., but "
            f"{spec_path} has sha256 {spec.sha256[:16]}...; {doing} anyway"
        )
