"""The ``craft`` command line, run in-process through ``main([...])``.

Every error path must give exit code 2 and exactly one stderr line starting
``craft: error:``, never a traceback, and must leave no output file behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import specs
from craft.cli import main
from craft.compiler import compile_spec
from craft.compiler.conditions import condition_mask
from craft.models import load_model
from specs.load import library_path
from tests.refusals import COIN
from tests.verify.test_behaviour import TWO_ANCHORS

LIBRARY_SPEC = str(specs.library_path("skip_trigram"))
STAT_KEYS = {"kl", "ce", "entropy", "accuracy", "n", "max_kl"}


SHADOWED = """\
format: craft-spec/1
name: shadowed
vocab: {A: [a, b]}
max_len: 4
start: {A: 1}
rules:
  - name: one
    bigram: {a: {a: 1}}
  - name: two
    bigram: {a: {b: 1}}
  - name: fallback
    bigram: {"*": {A: 1}}
"""

MALFORMED = COIN.replace("0.3", "0.4")  # probabilities sum to 1.1


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = [x for x in err.strip().splitlines() if not x.startswith("craft: warning: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("craft: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "skip.safetensors"
    assert main(["compile", LIBRARY_SPEC, "-o", str(path), "--family", "standard"]) == 0
    return path


def test_compile_writes_a_loadable_model_and_prints_bounds(tmp_path, capsys) -> None:
    out_path = tmp_path / "nested" / "skip.safetensors"
    code, out, err = run(capsys, "compile", LIBRARY_SPEC, "-o", str(out_path))
    assert code == 0, err
    model = load_model(out_path)
    assert model.cfg.family == "standard"
    assert model.meta["spec"]["sha256"] == specs.load_spec(LIBRARY_SPEC).sha256
    for needle in ["residual stream", "components", "constants", "max KL", "red-ask", "tok"]:
        assert needle in out
    assert f"{model.n_params():,}" in out


def test_compile_json_tensor_family_lists_conditions(tmp_path, capsys) -> None:
    out_path = tmp_path / "toy.safetensors"
    toy = tmp_path / "two.yaml"  # two anchors in a window change the output: under
    toy.write_text(TWO_ANCHORS)  # --layers 1 (no room for the exact OR) a condition
    argv = ["compile", str(toy), "-o", str(out_path), "--family", "tensor", "--json"]
    code, out, _ = run(capsys, *argv, "--layers", "1")
    assert code == 0
    data = json.loads(out)
    assert data["family"] == "tensor" and data["model"] == str(out_path)
    assert data["format"] == "craft-compile/1" and data["spec"]["name"] == "two-anchors"
    assert data["config"]["n_layers"] >= 1 and data["params"] > 0
    assert {sub["name"] for sub in data["layout"]} >= {"tok", "pos"}
    assert set(data["bounds"]) == set(specs.load_spec(toy).rule_names())
    assert data["conditions"] and all(isinstance(c, str) for c in data["conditions"])
    assert load_model(out_path).cfg.family == "tensor"


def test_eval_json_schema(model_file, capsys) -> None:
    code, out, err = run(
        capsys, "eval", str(model_file), "--spec", LIBRARY_SPEC, "--n", "30", "--json"
    )
    assert code == 0 and err == ""
    data = json.loads(out)
    assert set(data) == {"format", "model", "spec", "rules", "overall"}
    spec = specs.load_spec(LIBRARY_SPEC)
    assert data["format"] == "craft-eval/1" and data["model"] == str(model_file)
    assert data["spec"] == {"name": spec.name, "sha256": spec.sha256}
    names = spec.rule_names()
    assert set(data["rules"]) <= set(names) and "start" in data["rules"]
    for stats in [*data["rules"].values(), data["overall"]]:
        assert set(stats) == STAT_KEYS
    assert data["rules"]["start"]["n"] == 30
    assert data["overall"]["max_kl"] < 1e-3


def test_eval_table_has_every_rule_and_the_bounds(model_file, capsys) -> None:
    code, out, _ = run(capsys, "eval", str(model_file), "--spec", LIBRARY_SPEC, "-n", "30")
    assert code == 0
    for needle in ["overall", "start", "fallback", "excess (KL)", "argmax acc", "bound"]:
        assert needle in out
    assert "above the stated bound" not in out


def test_eval_warns_when_the_spec_hash_differs(model_file, tmp_path, capsys) -> None:
    changed = tmp_path / "changed.yaml"
    text = Path(LIBRARY_SPEC).read_text(encoding="utf-8")
    changed.write_text(text.replace("max_len: 24", "max_len: 20"), encoding="utf-8")
    code, out, err = run(capsys, "eval", str(model_file), "--spec", str(changed), "--n", "5")
    assert code == 0 and "overall" in out
    assert err.startswith("craft: warning: ") and "sha256" in err


def test_sample_json_is_deterministic(capsys) -> None:
    argv = ["sample", LIBRARY_SPEC, "-n", "4", "--length", "9", "--json", "--seed"]
    first, second = (json.loads(run(capsys, *argv, "7")[1]) for _ in range(2))
    assert first == second and len(first["sequences"]) == 4
    spec = specs.load_spec(LIBRARY_SPEC)
    assert first["format"] == "craft-sample/1" and first["spec"]["sha256"] == spec.sha256
    assert (first["seed"], first["length"]) == (7, 9)
    tokens, rule_ids = specs.sample(spec, 4, 9, seed=7)
    for row, ids, seq in zip(first["sequences"], rule_ids, tokens, strict=True):
        assert row["tokens"] == spec.vocab.decode(seq[1:])
        assert row["rules"] == [spec.rule_names()[i] for i in ids]
        assert row["rules"][0] == "start" and len(row["rules"]) == 9
    other = json.loads(run(capsys, *argv, "8")[1])
    assert other != first


def test_sample_text_one_sequence_a_line(capsys) -> None:
    code, out, _ = run(capsys, "sample", LIBRARY_SPEC, "-n", "3", "--length", "5")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3
    assert all(len(line.split()) == 5 and "<bos>" not in line for line in lines)


def test_inspect_mentions_family_layout_and_hash(model_file, capsys) -> None:
    sha = specs.load_spec(LIBRARY_SPEC).sha256
    code, out, _ = run(capsys, "inspect", str(model_file))
    assert code == 0
    for needle in ["standard", "residual stream", "tok", sha, "skip-trigram", "components"]:
        assert needle in out
    code, out, _ = run(capsys, "inspect", str(model_file), "--json", "--directions")
    data = json.loads(out)
    assert data["family"] == "standard" and data["spec"]["sha256"] == sha
    assert "tok:red" in data["directions"]
    assert sum(sub["size"] for sub in data["layout"]) == data["config"]["d_model"]


def test_spec_warnings_are_one_line_each(tmp_path, capsys) -> None:
    path = tmp_path / "shadowed.yaml"
    path.write_text(SHADOWED, encoding="utf-8")
    code, out, err = run(capsys, "sample", str(path), "-n", "1")
    assert code == 0 and out.strip()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("craft: warning: ") and "two" in lines[0]


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["compile", "{tmp}/missing.yaml", "-o", "{out}"], ["missing.yaml"]),
        (["compile", "{malformed}", "-o", "{out}"], ["malformed.yaml", "rules[0]"]),
        (["compile", "{coin}", "-o", "{out}", "--family", "cubic"], ["--family", "cubic"]),
        (["compile", "{coin}", "-o", "{coin}/x.safetensors"], ["cannot write"]),
        (["compile", "{coin}"], ["-o/--output"]),
        (["eval", "{junk}", "--spec", "{coin}"], ["junk.safetensors", "safetensors"]),
        (["inspect", "{junk}"], ["junk.safetensors"]),
        (["inspect", "{tmp}/absent.safetensors"], ["absent.safetensors"]),
        (["eval", "{model}", "--spec", "{coin}", "--n", "2"], ["predicts"]),  # after a warning
        (["sample", "{coin}", "-n", "0"], ["-n/--n"]),
        (["sample", "{coin}", "--length", "99"], ["length"]),
        (["compile", "{lib}", "-o", "{out}", "--shape", "2x4"], ["--shape", "2x4"]),
        (["compile", "{lib}", "-o", "{out}", "--shape", "1x1x8"], ["does not fit", "fix: --shape"]),
        (["compile", "{lib}", "-o", "{out}", "--d-head", "4"], ["--d-head", "--shape"]),
        (["compile", "{lib}", "-o", "{out}", "--attn-only"], ["--attn-only", "--shape"]),
        (["compile", "{lib}", "-o", "{out}", "--max-kl", "1e-3"], ["--max-kl", "--smallest"]),
        (["compile", "{lib}", "-o", "{out}", "--shape", "2x4x64", "--smallest"], ["--smallest"]),
        (["compile", "{lib}", "-o", "{out}", "--smallest", "--max-kl", "1e-12"], ["--max-kl"]),
        (
            ["compile", "{lib}", "-o", "{out}", "--shape", "2x4x64", "--family", "tensor"],
            ["--family", "tensor"],
        ),
        (["frobnicate"], ["frobnicate"]),
        ([], ["COMMAND"]),
    ],
)
def test_errors_are_one_line_with_exit_code_2(argv, needles, model_file, tmp_path, capsys) -> None:
    (tmp_path / "malformed.yaml").write_text(MALFORMED, encoding="utf-8")
    (tmp_path / "coin.yaml").write_text(COIN, encoding="utf-8")
    (tmp_path / "junk.safetensors").write_bytes(b"this is not a safetensors file")
    paths = {
        "tmp": tmp_path,
        "out": tmp_path / "out.safetensors",
        "malformed": tmp_path / "malformed.yaml",
        "coin": tmp_path / "coin.yaml",
        "junk": tmp_path / "junk.safetensors",
        "model": model_file,
        "lib": LIBRARY_SPEC,
    }
    before = sorted(tmp_path.iterdir())
    code, out, err = run(capsys, *(a.format(**paths) for a in argv))
    assert_one_error_line(code, err, *needles)
    assert out == ""
    assert sorted(tmp_path.iterdir()) == before  # no output file, no temporary left behind


def test_compile_shape_prints_codes_interference_and_scope(tmp_path, capsys) -> None:
    out_path = tmp_path / "compact.safetensors"
    code, out, err = run(capsys, "compile", LIBRARY_SPEC, "-o", str(out_path), "--shape", "2x4x64")
    assert code == 0, err
    for needle in [
        "attention-only",
        "2x4x64",
        "feature codes",
        "tok:red",
        "every context",
        "worst interference",
        "trigram-head",
        "parameters",
    ]:
        assert needle in out, needle
    m = load_model(out_path)
    assert (m.cfg.n_layers, m.cfg.n_heads, m.cfg.d_model, m.cfg.d_mlp) == (2, 4, 64, 0)
    code, out, _ = run(capsys, "inspect", str(out_path))
    assert code == 0 and "feature codes" in out and "cls:" in out


def test_compile_smallest_prints_the_curve(tmp_path, capsys) -> None:
    out_path = tmp_path / "small.safetensors"
    code, out, _ = run(capsys, "compile", LIBRARY_SPEC, "-o", str(out_path), "--smallest", "--json")
    assert code == 0
    doc = json.loads(out)
    searched = doc["searched"]
    assert any(r["fits"] for r in searched) and any(not r["fits"] for r in searched)
    assert all(r["why"] for r in searched if not r["fits"])
    best = min((r for r in searched if r["fits"]), key=lambda r: r["params"])
    assert doc["params"] == best["params"]
    assert doc["compiler"]["shape"] == best["shape"]


def test_names_with_brackets_are_printed_verbatim(tmp_path, capsys) -> None:
    spec = tmp_path / "odd.yaml"
    spec.write_text(COIN.replace("name: biased", 'name: "odd[/name]"'), encoding="utf-8")
    model = tmp_path / "odd.safetensors"
    code, out, err = run(capsys, "compile", str(spec), "-o", str(model))
    assert code == 0 and "odd[/name]" in out, err
    code, out, err = run(capsys, "eval", str(model), "--spec", str(spec), "--n", "3")
    assert code == 0 and "odd[/name]" in out, err


def test_help_exits_zero(capsys) -> None:
    code, out, _ = run(capsys, "compile", "--help")
    assert code == 0 and "--family" in out


def test_console_script_reports_errors_without_traceback(tmp_path) -> None:
    script = Path(sys.executable).with_name("craft")
    assert script.exists(), "the console script is installed by `make test` (pip install -e .)"
    result = subprocess.run(
        [str(script), "compile", str(tmp_path / "missing.yaml"), "-o", str(tmp_path / "m.st")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("craft: error: ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("family", ["standard", "tensor"])
def test_golden_table_through_the_cli(tmp_path, capsys, family):
    """The golden table, through `craft compile` and `craft eval --context --json`."""
    from tests.golden import GOLDEN

    cases = [c for c in GOLDEN if c.spec == "skip_trigram"] + [
        c for c in GOLDEN if c.spec == "toy_language"
    ][:6]
    models = {}
    for case in cases:
        if case.spec not in models:
            out = tmp_path / f"{case.spec}.safetensors"
            spec_path = str(library_path(case.spec))
            assert main(["compile", spec_path, "-o", str(out), "--family", family]) == 0
            models[case.spec] = (str(out), spec_path)
        capsys.readouterr()
        model, spec_path = models[case.spec]
        argv = ["eval", model, "--spec", spec_path, "--context", " ".join(case.context), "--json"]
        assert main(argv) == 0
        got = json.loads(capsys.readouterr().out)
        assert got["rule"] == case.rule
        expected = {t: float(Fraction(p)) for t, p in case.expected.items()}
        if got["kl"] <= got["bound"]:
            for token, prob in got["predicted"].items():
                assert abs(prob - expected.get(token, 0.0)) <= 1e-4, (case.id, token)
        else:  # only the tensor family may miss, and only where its stated conditions fail
            assert family == "tensor", case.id
            spec = specs.load_spec(spec_path)
            c = compile_spec(spec, family)
            tokens = [[len(spec.vocab), *specs.encode(spec, case.context)]]
            assert not condition_mask(c.conditions, c.analysis, np.array(tokens))[0, -1]


def test_help_shows_every_option_and_its_default() -> None:
    """Every option of every subcommand has help text, shows its default, and no
    reStructuredText markup reaches the terminal."""
    import argparse

    from craft.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        text = parser.format_help()
        assert "``" not in text, name
        for action in parser._actions:
            assert action.help, (name, action.option_strings or action.dest)
            if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
                flat = " ".join(text.split())
                assert f"(default: {action.default})" in flat, (name, action.option_strings)
        assert "(default: None)" not in text, name


def test_html_with_context_is_one_line(model_file, tmp_path, capsys) -> None:
    out = tmp_path / "r.html"
    argv = ["eval", str(model_file), "--spec", LIBRARY_SPEC, "--context", "the", "--html", str(out)]
    code, _, err = run(capsys, *argv)
    assert code == 2 and "--html" in err and "--context" in err and len(err.splitlines()) == 1
    assert not out.exists()
