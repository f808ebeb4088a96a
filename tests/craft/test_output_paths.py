"""No output path may overwrite an input, nor another output of the same command.

Every subcommand that writes files (compile, train, diff, import, tracr) is refused with
one line naming both arguments and the fix, before it reads or writes anything: the
folder is byte-identical afterwards. Equal paths, symlinks and hard links all count.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import specs
from craft.cli import main
from craft.paths import PathArg, refuse_overwrites, same_file
from specs.errors import CraftError
from tests.refusals import error_line, run, snapshot

SPEC = "spec.yaml"
MODEL = "model.safetensors"

# (argv, needles of the error line): every output that is an input or another output
CASES = {
    "compile -o SPEC": (["compile", SPEC, "-o", SPEC], ["-o spec.yaml", "SPEC spec.yaml"]),
    "compile -o symlink": (["compile", SPEC, "-o", "link.yaml"], ["-o link.yaml", "SPEC"]),
    "compile -o hard link": (["compile", "hard.yaml", "-o", SPEC], ["-o spec.yaml", "SPEC"]),
    "train --log SPEC": (
        ["train", SPEC, "-o", "t.safetensors", "--log", SPEC, "--steps", "1"],
        ["--log spec.yaml", "SPEC spec.yaml", "write the log elsewhere"],
    ),
    "train --plot -o": (
        ["train", SPEC, "-o", "t.safetensors", "--plot", "t.safetensors", "--steps", "1"],
        ["--plot t.safetensors", "-o t.safetensors", "write the plot elsewhere"],
    ),
    "train --log --plot": (
        ["train", SPEC, "-o", "t.safetensors", "--log", "x.out", "--plot", "x.out"],
        ["--plot x.out", "--log x.out"],
    ),
    "train --log -o (symlink)": (
        ["train", SPEC, "-o", MODEL, "--log", "model_link.safetensors", "--steps", "1"],
        ["--log model_link.safetensors", "-o model.safetensors"],
    ),
    "diff -o SPEC": (
        ["diff", MODEL, MODEL, "--spec", SPEC, "-o", SPEC],
        ["-o spec.yaml", "--spec spec.yaml", "write the report elsewhere"],
    ),
    "diff -o CRAFTED": (["diff", MODEL, MODEL, "--spec", SPEC, "-o", MODEL], ["CRAFTED"]),
    "diff -o run folder": (["diff", MODEL, "run", "--spec", SPEC, "-o", "run"], ["TRAINED"]),
    "diff -o holds the spec": (
        ["diff", MODEL, MODEL, "--spec", "report/report.md", "-o", "report"],
        ["-o report/report.md", "--spec report/report.md"],
    ),
    "import -o FILE": (
        ["import", MODEL, "--format", "tlens", "-o", MODEL],
        ["-o model.safetensors", "FILE model.safetensors", "write the model elsewhere"],
    ),
    "tracr -o PROGRAM": (
        ["tracr", "prog.py:program", "--vocab", "a,b", "--max-len", "3", "-o", "prog.py"],
        ["-o prog.py", "PROGRAM prog.py"],
    ),
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / MODEL
    assert main(["compile", str(specs.library_path("bigram")), "-o", str(path)]) == 0
    return path


@pytest.fixture
def folder(tmp_path: Path, compiled: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder of inputs: a spec (with a symlink and a hard link to it), a
    model (and a symlink), a run folder, a report folder holding a spec, a program."""
    shutil.copy(specs.library_path("bigram"), tmp_path / SPEC)
    (tmp_path / "link.yaml").symlink_to(SPEC)
    os.link(tmp_path / SPEC, tmp_path / "hard.yaml")
    shutil.copy(compiled, tmp_path / MODEL)
    (tmp_path / "model_link.safetensors").symlink_to(MODEL)
    (tmp_path / "run").mkdir()
    shutil.copy(compiled, tmp_path / "run" / "step_000000.safetensors")
    (tmp_path / "report").mkdir()
    shutil.copy(specs.library_path("bigram"), tmp_path / "report" / "report.md")
    (tmp_path / "prog.py").write_text("program = None\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", list(CASES))
def test_an_output_that_is_an_input_is_refused(folder: Path, capsys, case: str) -> None:
    argv, needles = CASES[case]
    before = snapshot(folder)
    code, out, err = run(capsys, *argv)
    error_line(code, err, *needles, "fix: write")
    assert out == ""
    assert snapshot(folder) == before  # inputs byte-identical, nothing added


def test_distinct_paths_pass_and_same_file_follows_links(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("x")
    (tmp_path / "l").symlink_to(a)
    assert same_file(a, tmp_path / "l")
    assert same_file(tmp_path / "new", tmp_path / "sub" / ".." / "new")  # neither exists
    assert not same_file(a, b)
    refuse_overwrites([PathArg("SPEC", a)], [PathArg("-o", b), PathArg("--log", tmp_path / "c")])
    with pytest.raises(CraftError, match="--log .* is the same file as -o"):
        refuse_overwrites([PathArg("SPEC", a)], [PathArg("-o", b), PathArg("--log", b)])
