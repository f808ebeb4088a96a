"""``craft tracr`` on faulty user programs (issue #11, class 7).

Whatever the user's program raises, at import, when called, or inside Tracr's compile
(which runs the program's functions over its value sets), and ``sys.exit()`` too, is
one ``craft: error:`` line naming the program, the exception and the user's line,
exit code 2, nothing written. A model that disagrees with its program is written only
with ``--write-failing``.
"""

from __future__ import annotations

import json
import logging

import pytest

from craft.tracr import from_rasp
from craft.tracr.agreement import CheckResult, Failure
from craft.tracr.pipeline import MAX_MLP_EXACTNESS, confirm_fix
from tests.refusals import error_line, run, snapshot

logging.getLogger("absl").setLevel(logging.ERROR)

FAULTY = """\
from tracr.rasp import rasp


def raises():
    raise ValueError("my bug")


def exits():
    raise SystemExit(3)


def partial_map():
    return rasp.Map(lambda x: {"a": 1}[x], rasp.tokens)
"""

CASES = {  # program -> needles of the error line
    "p.py:raises": ["calling 'raises' raised ValueError: my bug", "(at p.py:5)"],
    "p.py:exits": ["calling 'exits' raised SystemExit: 3", "(at p.py:9)"],
    "q.py:anything": ["importing 'q.py' raised SystemExit: 4", "(at q.py:2)"],
    "p.py:partial_map": ["compiling with Tracr raised KeyError: 'b'", "(at p.py:13)"],
}


@pytest.mark.parametrize("program", list(CASES))
def test_user_code_faults_are_one_line(tmp_path, monkeypatch, capsys, program) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.py").write_text(FAULTY)
    (tmp_path / "q.py").write_text("import sys\nsys.exit(4)\n")
    before = snapshot(tmp_path)
    code, _, err = run(
        capsys, "tracr", program, "--vocab", "a,b", "--max-len", "3", "-o", "m.safetensors"
    )
    error_line(code, err, program, *CASES[program])
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("value", ["inf", "nan", "1e7", "0", "-1"])
def test_mlp_exactness_stays_in_float32s_range(capsys, value) -> None:
    code, _, err = run(capsys, "tracr", "lib:sort", "--max-len", "3", "--mlp-exactness", value)
    error_line(code, err, "--mlp-exactness", "<= 1e+06")


def test_no_fix_is_suggested_past_the_limit() -> None:
    failing = CheckResult(
        agreement=0.5,
        checked=2,
        undefined=0,
        exhaustive=True,
        failures=(Failure(input=("a",), expected=("a",), got=("b",)),),
        suspects=("selector_width",),
    )
    fixed = confirm_fix(None, {"a"}, 1, failing, mlp_exactness=MAX_MLP_EXACTNESS)
    assert fixed.fix is not None and "float32's limit" in fixed.fix and "shorter" in fixed.fix


def test_a_disagreeing_model_is_written_only_when_asked(tmp_path, capsys) -> None:
    out = tmp_path / "m.safetensors"
    argv = ["tracr", "lib:length", "--max-len", "10", "--samples", "60", "--no-replay"]
    code, text, _ = run(capsys, *argv, "-o", out)
    assert code == 1 and not out.exists()
    assert f"not written to {out}" in text and "--write-failing" in text
    code, text, _ = run(capsys, *argv, "-o", out, "--write-failing", "--json")
    assert code == 1 and out.is_file() and json.loads(text)["model"] == str(out)


@pytest.mark.parametrize("forged", [{"input_tokens": None}, {"output_values": 3}, {}])
def test_forged_tracr_encodings_are_one_error(tmp_path, forged) -> None:
    from craft.models import save_model
    from craft.tracr import TracrModel
    from craft.tracr.program import load_program
    from specs.errors import CraftError

    program, vocab = load_program("lib:reverse", max_len=2)
    model = from_rasp(program, vocab, 2).model
    model.meta = {k: v for k, v in model.meta.items() if k != "compiler_bos"} | forged
    save_model(model, tmp_path / "forged.safetensors")
    with pytest.raises(CraftError, match="Tracr encodings in the header are missing"):
        TracrModel.load(tmp_path / "forged.safetensors")
