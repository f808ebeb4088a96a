"""Claims files are checked against the spec and the model before any search.

A claim naming an unknown rule, category or head, a ``models_agree`` model for another
vocabulary, a window no context can show, or a fraction outside (0, 1] stops ``craft
check`` with one line naming the claims file, the claim and the fix (exit code 2). A
fuzz test mutates a claims file every way (wrong types, unknown keys, huge numbers) and
asserts that nothing but a CraftError escapes parsing, validation and the search.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import specs
from craft.cli import main
from craft.models import load_model
from specs.errors import CraftError
from specs.load import load_spec
from tests.refusals import COIN, error_line, run, snapshot
from verify.check import check_all
from verify.claims import parse_claims, validate

SKIP = "skip.safetensors"  # compiled from skip_trigram.yaml: 1 layer x 3 heads

# claim body (YAML) -> needles of the error line (after "claims.yaml: claims[0]")
BAD = {
    "ablation: {head: '0.1', breaks: [nope]}": [".ablation.breaks[0]", "'nope' is not a rule"],
    "ablation: {head: '3.0', breaks: [red-ask]}": [".ablation.head", "L < 1 and H < 3"],
    "ablation: {head: '0.7', breaks: [red-ask]}": [".ablation.head", "head 0.7 is not"],
    "patching: {head: '0.1', rule: red-ask, category: NOUN}": [".patching.category", "CUE"],
    "patching: {head: '0.1', rule: red-ask, category: red}": [".patching.category", "KEY"],
    "models_agree: {other: coin.safetensors}": [".models_agree.other", "coin"],
    "models_agree: {other: missing.safetensors}": [".models_agree.other", "missing"],
    "window_only: {rule: red-ask, window: 1000000000000000000}": [".window_only.window", "22"],
    "window_only: {rule: start, window: 2}": [".window_only.rule", "start"],
    "window_only: {rule: red-ask, window: 3}, fraction: 0.5": [".fraction", "statistical"],
    "rule_holds: {rule: red-ask}, fraction: true": [".fraction", "0 < p <= 1"],
    "rule_holds: {rule: red-ask}, fraction: 5": [".fraction", "0 < p <= 1"],
    "rule_holds: {rule: red-ask, max_kl: 1e400}": [".rule_holds.max_kl", "finite"],
    "rule_holds: {rule: red-ask, argmax: 1}": [".rule_holds.argmax", "bool"],
    "head_role: {head: '0.1', role: skip-bigram, rule: so-then}": [".head_role.rule", "red-ask"],
    "head_role: {head: '0.1', role: skip-bigram}": [".head_role.rule", "skip_bigram rule"],
    "head_role: {head: '0.1', role: copying}, fraction: 0.5": [".fraction", "statistical"],
}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    (folder / "coin.yaml").write_text(COIN)
    spec = str(specs.library_path("skip_trigram"))
    assert main(["compile", spec, "-o", str(folder / SKIP)]) == 0
    assert main(["compile", str(folder / "coin.yaml"), "-o", str(folder / "coin.safetensors")]) == 0
    shutil.copy(spec, folder / "spec.yaml")
    return folder


@pytest.fixture
def folder(tmp_path: Path, models: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for p in models.iterdir():
        shutil.copy(p, tmp_path / p.name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("body", list(BAD))
def test_a_claim_that_does_not_fit_is_refused_before_the_search(
    folder: Path, capsys, body: str
) -> None:
    (folder / "claims.yaml").write_text(
        f"format: craft-claims/1\nclaims:\n  - {{name: bad-one, {body}}}\n"
    )
    before = snapshot(folder)
    code, out, err = run(capsys, "check", SKIP, "--spec", "spec.yaml", "--claims", "claims.yaml")
    line = error_line(code, err, "claims.yaml: claims[0]", "fix: ", *BAD[body])
    assert "claim 'bad-one'" in line
    assert out == ""
    assert snapshot(folder) == before


@pytest.mark.parametrize("value", ["5", "0", "-0.5", "nan", "inf", "true"])
def test_fraction_option_is_a_fraction(folder: Path, capsys, value: str) -> None:
    code, _, err = run(capsys, "check", SKIP, "--spec", "spec.yaml", "--fraction", value)
    error_line(code, err, "--fraction", "0 < p <= 1", repr(value))


# ---- fuzz: mutated claims files raise CraftError or check to a verdict, nothing else ----

BASE = {
    "format": "craft-claims/1",
    "claims": [
        {"name": "holds", "rule_holds": {"rule": "red-ask", "max_kl": 0.001}},
        {"name": "stat", "rule_holds": {"rule": "blue-cue"}, "fraction": 0.9},
        {"name": "agree", "models_agree": {"other": "OTHER", "rule": "so-then"}},
        {"name": "window", "window_only": {"rule": "red-ask", "window": 6}},
        {"name": "prev", "head_role": {"head": "0.0", "role": "previous-token"}},
        {"name": "skip", "head_role": {"head": "0.1", "role": "skip-bigram", "rule": "red-ask"}},
        {"name": "ablate", "ablation": {"head": "0.1", "breaks": ["red-ask"], "method": "mean"}},
        {"name": "patch", "patching": {"head": "0.1", "rule": "red-ask", "category": "KEY"}},
    ],
}
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, -1, 1, 2, 10**18, -(10**18), 10**400 // 10**380, 0.5, 1e300]),
    st.sampled_from([float("inf"), float("nan"), -0.0, 1e-320]),
    st.sampled_from(["", "x", "0.0", "9.9", "99999999999999999999.0", "start", "*", "KEY"]),
    st.sampled_from(["red-ask", "fallback", "so-then", "CUE", "copying", "induction", "mean"]),
    st.lists(st.sampled_from(["red-ask", "nope", 3, None]), max_size=3),
    st.dictionaries(st.sampled_from(["rule", "zzz", "head", "window"]), st.integers(), max_size=2),
)
KEYS = st.sampled_from(["name", "fraction", "rule", "head", "window", "zzz", "breaks", "role"])
FUZZ = settings(
    derandomize=True,
    database=None,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.nested_given],
)


def _slots(node: Any, out: list) -> list[tuple[Any, Any]]:
    """Every (container, key) pair of a nested dict/list document."""
    for key, value in list(node.items() if isinstance(node, dict) else enumerate(node)):
        out.append((node, key))
        if isinstance(value, dict | list):
            _slots(value, out)
    return out


@st.composite
def mutated_claims(draw: Any) -> dict:
    """BASE with one claim kept (or all), then one to three mutations."""
    data = copy.deepcopy(BASE)
    keep = draw(st.sampled_from([None, *range(len(BASE["claims"]))]))
    if keep is not None:
        data["claims"] = [data["claims"][keep]]
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(data, [])
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        op = draw(st.sampled_from(["junk", "drop", "add", "nest"]))
        if op == "junk":
            container[key] = draw(JUNK)
        elif op == "drop" and len(container) > 0:
            del container[key]
        elif op == "add" and isinstance(container, dict):
            container[draw(KEYS)] = draw(JUNK)
        elif op == "nest":
            container[key] = [container[key]]
    return data


@pytest.fixture(scope="module")
def target(models: Path) -> tuple:
    return load_model(models / SKIP), load_spec(models / "spec.yaml"), str(models / SKIP)


@FUZZ
@given(data=mutated_claims())
def test_mutated_claims_raise_craft_error_or_check(target: tuple, data: dict) -> None:
    model, spec, other = target
    text = yaml.safe_dump(data).replace("OTHER", other)  # through the YAML loader too
    try:
        claims = parse_claims(text, "fuzz.yaml")
        validate(claims, spec, model)
    except CraftError as e:
        assert str(e).count("\n") == 0
        return
    try:  # a valid mutation is checked to a verdict, on a tiny budget
        results = check_all(model, spec, claims, examples=2, sweep=4)
    except CraftError:
        return
    assert len(results) == len(claims)
