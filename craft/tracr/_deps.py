"""Tracr is an optional dependency: import it on first use, with an error that says how.

``require_tracr()`` returns a namespace of the Tracr modules the bridge uses, so the
rest of ``craft.tracr`` never imports Tracr (or JAX) at module import time: ``craft``
and its CLI start fast and work without the ``tracr`` extra.
"""

from __future__ import annotations

import functools
from importlib import metadata
from types import SimpleNamespace

from specs.errors import CraftError


@functools.cache
def require_tracr() -> SimpleNamespace:
    """The Tracr modules, or a CraftError naming the extra to install."""
    try:
        from tracr.compiler import (
            basis_inference,
            craft_graph_to_model,
            expr_to_craft_graph,
            nodes,
            rasp_to_graph,
            validating,
        )
        from tracr.craft import bases, transformers
        from tracr.rasp import rasp
    except ImportError as e:
        raise CraftError(
            f"Tracr is not installed ({e})",
            fix="pip install 'craft-circuits[tracr]' (tracr-pypi, jax, dm-haiku)",
        ) from None
    return SimpleNamespace(
        basis_inference=basis_inference,
        craft_graph_to_model=craft_graph_to_model,
        expr_to_craft_graph=expr_to_craft_graph,
        nodes=nodes,
        rasp_to_graph=rasp_to_graph,
        validating=validating,
        bases=bases,
        transformers=transformers,
        rasp=rasp,
    )


def tracr_version() -> str:
    """The installed tracr-pypi version (provenance for model files)."""
    try:
        return metadata.version("tracr-pypi")
    except metadata.PackageNotFoundError:
        return "unknown"
