"""``craft train`` through ``add_parser``/``run`` and a small argparse harness."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator

import pytest
import torch

import specs
from craft.models import load_model
from craft.train import cli
from specs.errors import CraftError

SPEC = str(specs.library_path("bigram"))
TINY = ["--d-model", "16", "--heads", "2", "--steps", "20", "--batch", "16", "--lr", "1e-2"]
TINY += ["--eval-batch", "32", "--device", "cpu", "--no-progress", "--threads", "1"]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="craft")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_parser(sub)
    return parser.parse_args(["train", *argv])


def test_run_writes_model_log_plot_and_checkpoints(tmp_path, capsys) -> None:
    out = tmp_path / "m.safetensors"
    args = parse(
        [SPEC, "-o", str(out), *TINY, "--save-every", "10", "--json", "--family", "tensor"]
    )
    assert args.run(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 20 and summary["family"] == "tensor"
    assert (tmp_path / "m.log.jsonl").is_file() and (tmp_path / "m.loss.png").is_file()
    assert sorted(p.name for p in (tmp_path / "m_run").iterdir()) == [
        "step_000000.safetensors",
        "step_000010.safetensors",
        "step_000020.safetensors",
    ]
    model = load_model(out)
    assert model.cfg.family == "tensor" and model.meta["training"]["steps"] == 20
    assert summary["format"] == "craft-train/1" and summary["model"] == str(out)
    kl = summary["kl"]
    assert set(kl["rules"]) | {"overall"} == set(model.meta["training"]["final_excess"])
    assert kl["overall"] == model.meta["training"]["final_excess"]["overall"]


def test_text_output_and_plot_none(tmp_path, capsys) -> None:
    out = tmp_path / "m.safetensors"
    log = tmp_path / "logs" / "run.jsonl"
    args = parse([SPEC, "-o", str(out), *TINY, "--plot", "none", "--log", str(log)])
    assert cli.run(args) == 0
    text = capsys.readouterr().out
    assert "trained standard model on bigram" in text and "overall excess loss" in text
    assert log.is_file() and not (tmp_path / "m.loss.png").exists()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--warmup", "20"], "warmup"),
        (["--positions", "rotary"], "positions"),
        (["--length", "999"], "max_len"),
    ],
)
def test_bad_arguments_are_craft_errors_and_write_nothing(tmp_path, extra, needle) -> None:
    out = tmp_path / "m.safetensors"
    args = parse([SPEC, "-o", str(out), *TINY, *extra])
    with pytest.raises(CraftError, match=needle) as err:
        cli.run(args)
    assert "\n" not in str(err.value)
    assert not out.exists()


def test_output_must_be_safetensors(tmp_path) -> None:
    args = parse([SPEC, "-o", str(tmp_path / "m.pt"), *TINY])
    with pytest.raises(CraftError, match="safetensors"):
        cli.run(args)
