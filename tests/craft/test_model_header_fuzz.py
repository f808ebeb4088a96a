"""Fuzzing the model loader: mutated headers either load or raise CraftError, cheaply.

Valid model files (a 0-layer bigram model, a 1-layer standard model with an MLP and
component records, a 2-layer tensor-family model) are rewritten with the same tensors
and a mutated JSON header: fields dropped, replaced by junk of every JSON type (huge and
negative numbers included), renamed, nested, duplicated. ``load_model`` must load the
file or raise a CraftError naming it, never anything else, and never allocate much
(Python's heap by ``tracemalloc``, torch's by the process's peak resident size); a file
that loads must also print with ``craft inspect``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import resource
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import specs
from craft.cli import main
from craft.models import load_model
from specs.errors import CraftError

BASES = {  # name: (library spec, family)
    "bigram": ("bigram", "standard"),
    "skip": ("skip_trigram", "standard"),
    "induction-tensor": ("induction", "tensor"),
}
MAX_BYTES = 200 * 2**20  # per load: far above a small model, far below a runaway

FUZZ = settings(
    derandomize=True,
    database=None,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

HUGE = [10**12, 2**31, 2**31 - 1, 2**63, 10**100, -1, -(10**12), 0, 1e308, float("inf")]
JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.sampled_from(HUGE)
    | st.integers(-3, 100)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.sampled_from(["standard", "tensor", "rotary", "none", "craft-model/1", "tok", ""]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def _slots(node: Any, out: list) -> list[tuple[Any, Any]]:
    """Every (container, key) pair in a nested dict/list document."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in list(items):
        out.append((node, key))
        if isinstance(value, dict | list):
            _slots(value, out)
    return out


def _mutate(header: dict, draw: Any) -> None:
    """One mutation, in the config (the fields that size a model) most often."""
    region = draw(st.sampled_from(["config", "config", "meta", "layout", "header"]))
    node = header.get(region)
    if region == "header" or not isinstance(node, dict | list) or not node:
        slots = [(header, key) for key in header] + _slots(header, [])
    elif region == "config":
        sizes_first = sorted(node, key=lambda k: not str(k).startswith(("n_", "d_")))
        slots = [(node, key) for key in sizes_first]  # Hypothesis favours early choices
    else:
        slots = _slots(node, [])
    container, key = draw(st.sampled_from(slots))
    value = container[key]
    op = draw(st.sampled_from(["huge", "perturb", "junk", "drop", "nest", "rekey", "dup"]))
    if op == "drop":
        del container[key]
    elif op == "junk":
        container[key] = draw(JUNK)
    elif op == "huge":
        container[key] = draw(st.sampled_from(HUGE))
    elif op == "perturb" and isinstance(value, int) and not isinstance(value, bool):
        container[key] = value + draw(st.sampled_from([-1, 1, 2, 10**9]))
    elif op == "nest":
        container[key] = {"junk": value} if draw(st.booleans()) else [value, value]
    elif op == "rekey" and isinstance(container, dict):
        container[draw(st.sampled_from(["extra", "n_experts", "meta", "layout"]))] = container.pop(
            key
        )
    elif op == "dup" and isinstance(container, list):
        container.append(copy.deepcopy(value))


@st.composite
def mutated_headers(draw: Any, bases: dict) -> tuple[str, Any]:
    name = draw(st.sampled_from(sorted(bases)))
    header = copy.deepcopy(bases[name][0])
    for _ in range(draw(st.integers(1, 3))):
        if not isinstance(header, dict) or not header:
            break
        _mutate(header, draw)
    return name, header


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, dict]]:
    """Each base model's header and tensors, compiled once."""
    out = {}
    folder = tmp_path_factory.mktemp("bases")
    for name, (spec, family) in BASES.items():
        path = folder / f"{name}.safetensors"
        argv = ["compile", str(specs.library_path(spec)), "-o", str(path), "--family", family]
        assert main(argv) == 0
        with safe_open(str(path), framework="pt") as f:
            out[name] = (json.loads(f.metadata()["craft"]), load_file(str(path)))
    return out


def _peak_rss() -> int:
    """The process's peak resident size in bytes (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _load(path: Path) -> bool:
    """Load ``path`` under the memory checks; True when it loaded, False on CraftError."""
    rss = _peak_rss()
    tracemalloc.start()
    try:
        load_model(path)
        loaded = True
    except CraftError as e:
        assert str(e).startswith(str(path)), e  # every error names the file first
        loaded = False
    finally:
        heap = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert heap < MAX_BYTES, heap
    assert _peak_rss() - rss < MAX_BYTES
    return loaded


def test_mutated_headers_load_or_raise_craft_error(bases, tmp_path_factory) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "m.safetensors"
    outcomes = {True: 0, False: 0}

    @FUZZ
    @given(mutated_headers(bases))
    def check(case: tuple[str, Any]) -> None:
        name, header = case
        save_file(bases[name][1], str(path), metadata={"craft": json.dumps(header)})
        loaded = _load(path)
        outcomes[loaded] += 1
        if loaded:  # what loads must also print
            with contextlib.redirect_stdout(io.StringIO()):
                assert main(["inspect", str(path)]) == 0

    check()
    assert outcomes[True] and outcomes[False]  # the fuzz reaches both sides
