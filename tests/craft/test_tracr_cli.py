"""``craft tracr`` (through its own ``add_parser``/``run``), program loading and user errors.

``run_cli`` wires the subcommand the way the ``craft`` front door does: with
``verify.tracr_check.check`` (the Hypothesis search of ``craft check``) injected.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest

from craft.tracr import TracrModel, from_rasp
from craft.tracr import cli as tracr_cli
from craft.tracr.program import load_program, parse_vocab
from specs.errors import CraftError
from verify.tracr_check import check as tracr_check

logging.getLogger("absl").setLevel(logging.ERROR)

PROGRAMS = """\
from tracr.compiler import lib
from tracr.rasp import rasp

reverse = lib.make_reverse(rasp.tokens)


def make_program():
    return lib.make_reverse(rasp.tokens)


def make_sorter(max_len):
    return lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=max_len, min_key=1)


def make_upper():
    return rasp.Map(lambda t: t.upper(), rasp.tokens)


not_a_program = 3
"""


@pytest.fixture()
def programs(tmp_path: Path) -> Path:
    path = tmp_path / "my_programs.py"
    path.write_text(PROGRAMS)
    return path


def run_cli(*argv: str, check=tracr_check, replay_dir: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog="craft")
    tracr_cli.add_parser(parser.add_subparsers(dest="command"), check, replay_dir)
    return tracr_cli.run(parser.parse_args(["tracr", *argv]))


def test_cli_compiles_checks_and_writes(programs: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "prog.safetensors"
    code = run_cli(f"{programs}:make_program", "--vocab", "a,b,c", "--max-len", "4", "-o", str(out))
    text = capsys.readouterr().out
    assert code == 0
    assert "layout:" in text and "tokens x4" in text  # compiler_pad is pruned
    pruned = next(line for line in text.splitlines() if line.startswith("pruned"))
    assert "tokens:compiler_pad" in pruned
    assert "agreement 1.0000 (120/120, all inputs)" in text
    assert TracrModel.load(out).run(["BOS", "a", "b", "c"]) == ["BOS", "c", "b", "a"]


def test_cli_json_has_the_issue_keys(programs: Path, capsys) -> None:
    code = run_cli(f"{programs}:make_sorter", "--vocab", "1,2,3", "--max-len", "4", "--json")
    obj = json.loads(capsys.readouterr().out)
    assert code == 0
    for key, kind in [
        ("agreement", float),
        ("checked", int),
        ("exhaustive", bool),
        ("failures", list),
        ("compile_seconds", float),
        ("layers", int),
        ("d_model", int),
        ("params", int),
    ]:
        assert isinstance(obj[key], kind), key
    assert obj["agreement"] == 1.0 and obj["exhaustive"] and obj["checked"] == 120


def test_cli_reports_a_failure_with_exit_code_1(capsys) -> None:
    code = run_cli("lib:length", "--max-len", "10", "--json", "--samples", "60")
    obj = json.loads(capsys.readouterr().out)
    assert code == tracr_cli.EXIT_DISAGREE
    assert obj["agreement"] < 1.0
    assert obj["failures"][0]["input"] == ["a"] * 10
    assert "1000" in obj["fix"]


def test_front_door_searches_with_the_replay_database(tmp_path: Path, monkeypatch, capsys) -> None:
    """``craft tracr`` through ``craft.cli`` uses the replay store like ``craft check``:
    the second run re-checks the stored minimal failure first."""
    from craft.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRAFT_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["tracr", "lib:length", "--max-len", "10", "--json", "--samples", "60"]
    runs = []
    for _ in range(2):
        assert main(argv) == tracr_cli.EXIT_DISAGREE
        runs.append(json.loads(capsys.readouterr().out))
    assert any((tmp_path / "cache" / "replay").iterdir())
    assert runs[1]["failures"][0] == runs[0]["failures"][0]
    assert runs[0]["found_after"] > 1 and runs[1]["found_after"] == 1
    assert main([*argv, "--no-replay"]) == tracr_cli.EXIT_DISAGREE
    assert json.loads(capsys.readouterr().out)["found_after"] > 1  # no replay: searched again


def test_without_an_injected_check_only_exhaustive_checks_run() -> None:
    """``craft`` alone (no ``verify``) converts and checks small input spaces; a large one
    is a one-line error naming the fix."""
    assert run_cli("lib:reverse", "--max-len", "3", check=None) == 0
    with pytest.raises(CraftError, match="over the exhaustive limit") as info:
        run_cli("lib:length", "--max-len", "10", check=None)
    assert "verify.tracr_check" in str(info.value) and "\n" not in str(info.value)


def test_output_values_unlike_the_inputs_decode(programs: Path) -> None:
    program, _ = load_program(f"{programs}:make_upper", max_len=3)
    model = from_rasp(program, {"a", "b"}, 3)
    assert model.run(["BOS", "b", "a"]) == ["BOS", "B", "A"]


@pytest.mark.parametrize(
    "spec, match",
    [
        ("no_colon", "FILE.py:NAME"),
        ("missing.py:f", "no such file"),
        ("{programs}:nothing", "defines no 'nothing'"),
        ("{programs}:not_a_program", "not a RASP SOp"),
        ("lib:nope", "no library program"),
        ("no_such_module_xyz:f", "cannot import module"),
    ],
)
def test_bad_program_specs_name_the_problem(programs: Path, spec: str, match: str) -> None:
    with pytest.raises(CraftError, match=match):
        load_program(spec.format(programs=programs), max_len=3)


def test_module_attribute_specs_load() -> None:
    program, vocab = load_program("tracr.compiler.lib:make_hist", max_len=3)
    assert vocab is None and program.label.startswith("hist")


@pytest.mark.parametrize(
    "text, match", [("a,,b", "empty token"), ("a,b,a", "repeats"), ("", "empty")]
)
def test_bad_vocab(text: str, match: str) -> None:
    with pytest.raises(CraftError, match=match):
        parse_vocab(text)


def test_vocab_parsing() -> None:
    assert parse_vocab("1,2,3") == {1, 2, 3}
    assert parse_vocab("a, b") == {"a", "b"}


def test_user_errors_at_compile_and_run(programs: Path) -> None:
    program, _ = load_program(f"{programs}:reverse", max_len=3)
    with pytest.raises(CraftError, match="compiler token 'BOS'"):
        from_rasp(program, {"a", "BOS"}, 3)
    model = from_rasp(program, {"a", "b"}, 3)
    with pytest.raises(CraftError, match="does not start with the BOS"):
        model.run(["a", "b"])
    with pytest.raises(CraftError, match="not in the model's vocabulary"):
        model.run(["BOS", "z"])
    with pytest.raises(CraftError, match="longer than"):
        model.run(["BOS", "a", "a", "a", "a"])


def test_unsupported_program_names_the_operation() -> None:
    from tracr.rasp import rasp

    bad = rasp.numerical(
        rasp.Aggregate(
            rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ), rasp.tokens, default=1
        )
    ).named("bad_agg")
    with pytest.raises(CraftError, match="bad_agg"):
        from_rasp(bad, {1, 2}, 3)


def test_tensor_family_outside_the_fragment_is_refused_naming_the_op() -> None:
    with pytest.raises(CraftError, match=r"SelectorWidth 'hist_\d+' needs softmax"):
        run_cli("lib:hist", "--max-len", "3", "--family", "tensor")
