"""Write faults: a full disk, SIGTERM in a write, Ctrl-C in training (issue #11, class 5).

Each fault is real, not mocked at the level of the code under test: the full disk is a
file-size limit (``RLIMIT_FSIZE``, so the OS fails the write with EFBIG inside
safetensors' Rust writer), and the signals are sent to this process with ``os.kill``
from inside the write or the training step. After each: the one line and exit code the
README promises, the inputs byte-identical, no temporary file left.
"""

from __future__ import annotations

import json
import os
import resource
import signal
from pathlib import Path

import specs
from craft.models import io as model_io
from craft.train import loop
from specs.errors import CraftError
from tests.refusals import error_line, run, snapshot

BIGRAM = str(specs.library_path("bigram"))
TINY = ["--d-model", "16", "--heads", "2", "--batch", "8", "--eval-batch", "16"]
TINY += ["--device", "cpu", "--no-progress", "--threads", "1", "--plot", "none"]


def _one_line(err: str, code: int, expected_code: int, start: str) -> str:
    assert code == expected_code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), err
    return lines[0]


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, capsys) -> None:
    before = snapshot(tmp_path)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, hard))  # the model: 3.7 KB
    try:
        out = tmp_path / "toy.safetensors"
        code, _, err = run(capsys, "compile", BIGRAM, "-o", out)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    line = error_line(code, err, str(out), "cannot write the model file", "File too large")
    assert "nothing was written" in line
    assert snapshot(tmp_path) == before


def test_sigterm_during_a_write_removes_the_temp_file(tmp_path, capsys, monkeypatch) -> None:
    def half_then_sigterm(tensors, path, metadata=None) -> None:
        Path(path).write_bytes(b"\0" * 4096)  # a partial file on disk, then the signal
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(model_io, "save_file", half_then_sigterm)
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(Path(BIGRAM).read_bytes())
    before = snapshot(tmp_path)
    code, _, err = run(capsys, "compile", spec, "-o", tmp_path / "m.safetensors")
    line = _one_line(err, code, 143, "craft: terminated (SIGTERM); ")
    assert "no output was left half-written" in line
    assert snapshot(tmp_path) == before


def test_ctrl_c_in_training_keeps_the_log_and_complete_checkpoints(
    tmp_path, capsys, monkeypatch
) -> None:
    step = loop._step

    def interrupted_at_five(model, opt, tokens, cfg, i, tensor):
        if i == 5:
            os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt here
        return step(model, opt, tokens, cfg, i, tensor)

    monkeypatch.setattr(loop, "_step", interrupted_at_five)
    out = tmp_path / "m.safetensors"
    argv = ["train", BIGRAM, "-o", out, *TINY, "--steps", "20"]
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own
    try:
        code, _, err = run(capsys, *argv, "--eval-every", "2", "--save-every", "2")
    finally:
        signal.signal(signal.SIGINT, before)
    line = _one_line(err, code, 130, "craft: interrupted (Ctrl-C); ")
    assert "stopped at step 5 of 20; the model was not written" in line
    assert "the log" in line and "(to step 4)" in line and "3 complete checkpoints" in line
    assert not out.exists()
    assert sorted(p.name for p in (tmp_path / "m_run").iterdir()) == [
        f"step_{s:06d}.safetensors" for s in (0, 2, 4)
    ]
    records = [json.loads(x) for x in (tmp_path / "m.log.jsonl").read_text().splitlines()]
    assert [r.get("step") for r in records] == [0, 2, 4, 5]
    assert records[-1]["stopped"] == "interrupted" and records[-1]["model_written"] is False
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_written_files_keep_the_umask_mode(tmp_path, capsys) -> None:
    old = os.umask(0o027)
    try:
        code, _, err = run(capsys, "compile", BIGRAM, "-o", tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert code == 0, err
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o640


def test_output_under_a_file_is_one_line(tmp_path, capsys) -> None:
    (tmp_path / "plain").write_text("x")
    target = tmp_path / "plain" / "m.safetensors"  # its folder is a file: mkdir fails
    before = snapshot(tmp_path)
    code, _, err = run(capsys, "compile", BIGRAM, "-o", target)
    error_line(code, err, str(target), "cannot write the model file")
    assert snapshot(tmp_path) == before


def test_a_failed_train_says_so_in_its_log(tmp_path, capsys, monkeypatch) -> None:
    step = loop._step

    def diverges_at_three(model, opt, tokens, cfg, i, tensor):
        if i == 3:
            raise CraftError("the loss became nan at step 3", fix="lower --lr")
        return step(model, opt, tokens, cfg, i, tensor)

    monkeypatch.setattr(loop, "_step", diverges_at_three)
    out = tmp_path / "m.safetensors"
    code, _, err = run(capsys, "train", BIGRAM, "-o", out, *TINY, "--steps", "10")
    error_line(code, err, "the loss became nan at step 3")
    last = json.loads((tmp_path / "m.log.jsonl").read_text().splitlines()[-1])
    assert last["model_written"] is False and "loss became nan" in last["stopped"]
    assert not out.exists()
