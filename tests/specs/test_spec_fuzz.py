"""Fuzzing the loader: mutated library specs either load or raise CraftError, nothing else."""

from __future__ import annotations

import copy
import json
import warnings
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import specs
from specs import CraftError, CraftWarning, parse_spec
from specs.yamlio import parse_text

BASES = {name: parse_text(specs.library_path(name).read_text(), name) for name in specs.LIBRARY}

FUZZ = settings(
    derandomize=True,
    database=None,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.sampled_from(["*", "<bos>", "1/0", "1/3", "-0.5", "NOUN", "alice", "start", ""]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=4) | st.integers(0, 3), inner, max_size=3),
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


def _mutate(data: dict, draw: Any) -> None:
    slots = _slots(data, [])
    container, key = draw(st.sampled_from(slots))
    value = container[key]
    op = draw(st.sampled_from(["drop", "junk", "rename", "perturb", "nest", "rekey", "dup"]))
    if op == "drop":
        del container[key]
    elif op == "junk":
        container[key] = draw(JUNK)
    elif op == "rename":
        container[key] = draw(st.sampled_from(["zzz", "Alice", "NOUNS", "*", "<bos>", "a b"]))
    elif op == "perturb":
        if isinstance(value, bool) or not isinstance(value, int | float):
            container[key] = draw(st.sampled_from([-1, 0, 2, 0.5, "0.3", "x"]))
        else:
            container[key] = value + draw(st.sampled_from([-1, -0.1, 0.05, 1, 10**9]))
    elif op == "nest":
        container[key] = {"junk": value} if draw(st.booleans()) else [value, value]
    elif op == "rekey" and isinstance(container, dict):
        container[draw(st.sampled_from(["extra", "zzz", "*", "on"]))] = container.pop(key)
    elif op == "dup" and isinstance(container, list):
        container.append(copy.deepcopy(value))


@st.composite
def mutated_specs(draw: Any) -> dict:
    data = copy.deepcopy(BASES[draw(st.sampled_from(sorted(BASES)))])
    for _ in range(draw(st.integers(1, 3))):
        if not _slots(data, []):
            break
        _mutate(data, draw)
    return data


def _check(data: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CraftWarning)
        try:
            spec = parse_spec(data, "fuzz.yaml")
        except CraftError as error:
            message = str(error)
            assert message.startswith("fuzz.yaml") and "\n" not in message
            assert "; fix: " in message
        else:
            assert isinstance(spec, specs.Spec) and len(spec.sha256) == 64


@FUZZ
@given(mutated_specs())
def test_mutated_specs_load_or_raise_craft_error(data: dict) -> None:
    _check(data)


@settings(FUZZ, max_examples=100)
@given(mutated_specs())
def test_mutated_specs_as_text_load_or_raise_craft_error(data: dict) -> None:
    text = json.dumps(data, default=str, allow_nan=True)
    _check(text)
