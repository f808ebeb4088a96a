"""Models that diverged or were made for another spec: refused, or failing, never a crash.

``craft check`` refuses a model whose vocabulary, circuit or context length does not
fit the spec (one line, exit code 2); a model whose outputs are NaN or inf fails its
claims with the non-finite value reported (exit code 1); ``craft diff`` refuses a model
with non-finite weights; ``craft eval`` flags non-finite outputs in one warning line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import specs
from craft.cli import main
from craft.models import load_model, save_model
from tests.refusals import COIN, error_line, run, snapshot

SKIP = "skip.safetensors"  # compiled from skip_trigram.yaml
BIGRAM = "bigram.safetensors"  # compiled from bigram.yaml (max_len 16)
# every kind of claim, for the model of skip_trigram.yaml
CLAIMS = """\
format: craft-claims/1
claims:
  - {name: holds, rule_holds: {rule: red-ask}}
  - {name: holds-stat, rule_holds: {rule: blue-cue}, fraction: 0.9}
  - {name: agree, models_agree: {other: skip.safetensors}}
  - {name: window, window_only: {rule: red-ask, window: 6}}
  - {name: prev, head_role: {head: "0.0", role: previous-token}}
  - {name: copy, head_role: {head: "0.1", role: copying}}
  - {name: ablate, ablation: {head: "0.1", breaks: [red-ask]}}
  - {name: ablate-mean, ablation: {head: "0.1", breaks: [red-ask], method: mean}}
  - {name: patch, patching: {head: "0.1", rule: red-ask, category: CUE}}
"""
FAST = ("--examples", "8", "--sweep", "8", "--no-replay")


def _broken(source: Path, path: Path, how: str) -> None:
    """A copy of ``source`` whose outputs are NaN (one unembedding weight) or inf (every
    embedding weight: the residual is inf, attention and logits NaN or inf)."""
    model = load_model(source)
    with torch.no_grad():
        if how == "nan":
            model.unembed.W_U[0, 0] = float("nan")
        else:
            model.embed.W_E.fill_(float("inf"))
    save_model(model, path)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    for name, spec in ((SKIP, "skip_trigram"), (BIGRAM, "bigram")):
        assert main(["compile", str(specs.library_path(spec)), "-o", str(folder / name)]) == 0
    for how in ("nan", "inf"):
        _broken(folder / SKIP, folder / f"{how}.safetensors", how)
    return folder


@pytest.fixture
def folder(tmp_path: Path, models: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The models, the library specs, a coin spec and a claims file, in the cwd."""
    for p in models.iterdir():
        shutil.copy(p, tmp_path / p.name)
    for name in ("skip_trigram", "bigram"):
        shutil.copy(specs.library_path(name), tmp_path / f"{name}.yaml")
    (tmp_path / "coin.yaml").write_text(COIN)
    (tmp_path / "claims.yaml").write_text(CLAIMS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


REFUSED = {
    "another vocabulary size": (
        ["check", SKIP, "--spec", "coin.yaml"],
        [SKIP, "predicts 11 tokens", "coin"],
    ),
    "another vocabulary, same size": (
        ["check", SKIP, "--spec", "bigram.yaml"],
        [SKIP, "red-ask", "skip_trigram.yaml"],
    ),
    "contexts longer than the model": (
        ["check", BIGRAM, "--spec", "skip_trigram.yaml"],
        [BIGRAM, "max_len at most 16"],
    ),
    "claims for another vocabulary": (
        ["check", BIGRAM, "--spec", "bigram.yaml", "--claims", "claims.yaml"],
        ["claims.yaml: claims[0].rule_holds.rule", "'red-ask' is not a rule"],
    ),
    "check --like a diverged model": (
        ["check", "nan.safetensors", "--spec", "skip_trigram.yaml", "--like", SKIP],
        ["nan.safetensors", "not finite", "earlier checkpoint"],
    ),
    "diff against a diverged model": (
        ["diff", SKIP, "nan.safetensors", "--spec", "skip_trigram.yaml", "-o", "out", "-n", "4"],
        ["nan.safetensors", "not finite"],
    ),
    "diff against a model of shorter contexts": (
        ["diff", SKIP, BIGRAM, "--spec", "skip_trigram.yaml", "-o", "out", "-n", "4"],
        ["diff: bigram.safetensors", "reads 17 positions"],
    ),
    "diff against another vocabulary size": (
        ["diff", SKIP, SKIP, "--spec", "coin.yaml", "-o", "out", "-n", "4"],
        ["spec 'coin' has 2"],
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_model_that_does_not_fit_is_refused(folder: Path, capsys, case: str) -> None:
    argv, needles = REFUSED[case]
    before = snapshot(folder)
    code, _, err = run(capsys, *argv, *(FAST[-1:] if argv[0] == "check" else ()))
    error_line(code, err, *needles)
    assert snapshot(folder) == before  # nothing written, not even a report folder


@pytest.mark.parametrize(
    "model, claims", [("nan.safetensors", "claims.yaml"), ("inf.safetensors", None)]
)
def test_a_diverged_model_fails_its_claims(folder: Path, capsys, model: str, claims) -> None:
    before = snapshot(folder)
    extra = ("--claims", claims) if claims else ()
    code, out, err = run(
        capsys, "check", model, "--spec", "skip_trigram.yaml", *extra, *FAST, "--json"
    )
    assert code == 1, err
    assert "Traceback" not in err and "craft: error:" not in err
    assert "NaN or inf" in err
    results = json.loads(out)["claims"]
    failed = [r for r in results if not r["passed"]]
    assert failed
    non_finite = [r for r in failed if r["value"] in ("nan", "inf")]
    assert non_finite, failed
    if claims:  # every kind, rule_holds to patching, ran to its verdict
        assert {r["name"] for r in results} == {
            "holds",
            "holds-stat",
            "agree",
            "window",
            "prev",
            "copy",
            "ablate",
            "ablate-mean",
            "patch",
        }
        assert not next(r for r in results if r["name"] == "copy")["passed"]
    assert snapshot(folder) == before


def _not_json(literal: str) -> None:
    raise AssertionError(f"{literal} is not JSON")


def test_eval_flags_non_finite_outputs(folder: Path, capsys) -> None:
    code, out, err = run(
        capsys, "eval", "nan.safetensors", "--spec", "skip_trigram.yaml", "-n", "4"
    )
    assert code == 0, err
    warned = [x for x in err.splitlines() if "NaN or inf" in x]
    assert len(warned) == 1 and warned[0].startswith("craft: warning: nan.safetensors")
    code, out, _ = run(
        capsys, "eval", "nan.safetensors", "--spec", "skip_trigram.yaml", "-n", "4", "--json"
    )
    result = json.loads(out, parse_constant=_not_json)  # strict JSON: no NaN literals
    assert result["non_finite"] == result["overall"]["n"] > 0
    _, out, err = run(capsys, "eval", SKIP, "--spec", "skip_trigram.yaml", "-n", "4", "--json")
    assert "non_finite" not in json.loads(out) and "NaN" not in err
