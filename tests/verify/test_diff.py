"""craft diff: crafted vs itself, vs an induction-ablated copy, vs a gauge-transformed copy;
the report files; the CLI's --json through its own parser."""

from __future__ import annotations

import argparse
import copy
import json

import numpy as np
import pytest
import torch

from craft.compiler import compile_spec
from craft.models import save_model
from specs import library_path, load_spec
from verify import diff_cli
from verify.diff import diff
from verify.gauge import apply_gauge
from verify.report import write_report

N = 40  # sampled sequences: enough for every rule of these specs to fire


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def crafted(name: str, family: str = "standard"):
    spec = load_spec(library_path(name))
    return compile_spec(spec, family).model, spec


def without_induction(model):
    """A copy whose induction head writes nothing (W_O zeroed)."""
    out = copy.deepcopy(model)
    rec = next(c for c in model.meta["components"] if c["kind"] == "InductionHead")
    with torch.no_grad():
        out.blocks[rec["layer"]].attn.W_O[rec["head"]] = 0
    out.meta = {}  # a trained model names no components
    return out


CASES = [
    ("induction", "standard"),
    ("induction", "tensor"),
    ("skip_trigram", "standard"),
    ("skip_trigram", "tensor"),
]


@pytest.mark.parametrize(("name", "family"), CASES)
def test_itself_all_found(name, family):
    model, spec = crafted(name, family)
    d = diff(model, model, spec, n_seqs=N)
    assert d.components
    for c in d.components:
        assert c.verdict == "found", c.match.component.name
        assert abs(c.match.similarity - 1) < 1e-6
        assert c.match.heads == ((c.match.component.layer, c.match.component.head),)
        assert c.hurt == c.relied
    assert all(abs(v) < 1e-12 for v in d.agreement.values())
    assert d.direct is None or abs(d.direct - 1) < 1e-6
    json.dumps(d.to_json())  # serialisable


@pytest.mark.parametrize(("name", "family"), CASES)
def test_gauge_copy_all_found(name, family):
    model, spec = crafted(name, family)
    other = apply_gauge(model.double(), np.random.default_rng(3))
    other.meta = {}
    d = diff(model, other, spec, n_seqs=N)
    for c in d.components:
        assert c.verdict == "found", c.match.component.name
        assert abs(c.match.similarity - 1) < 1e-6
    assert all(v < 1e-9 for v in d.agreement.values())


def test_induction_removed_is_missing(tmp_path):
    model, spec = crafted("induction")
    d = diff(model, without_induction(model), spec, n_seqs=N)
    verdicts = {c.match.component.kind: c for c in d.components}
    induction = verdicts["InductionHead"]
    assert induction.verdict == "missing"
    assert induction.match.heads == ()
    assert induction.crafted.zero["induction"] > 1.0  # ablating the crafted head costs nats
    assert d.trained.rules["induction"].kl > d.crafted.rules["induction"].kl + 1.0
    assert d.agreement["induction"] > 1.0
    assert verdicts["PrevToken"].verdict == "partly"  # present, but nothing relies on it now
    text = write_report(d, tmp_path).read_text()
    assert "| induction:induction | InductionHead | L1H0 | - |" in text
    assert "**missing**" in text
    row = next(line for line in text.splitlines() if line.startswith("| induction | "))
    excess_crafted, excess_trained = (float(x) for x in row.split("|")[5:7])
    assert excess_trained > excess_crafted + 1.0


def test_report_files(tmp_path):
    model, spec = crafted("skip_trigram")
    d = diff(model, model, spec, n_seqs=N)
    path = write_report(d, tmp_path / "report")
    assert path == tmp_path / "report" / "report.md"
    figures = sorted(p.name for p in (tmp_path / "report" / "figures").iterdir())
    assert "direct_path.png" in figures
    assert "skip0_qk_tokens.png" in figures and "skip0_ov.png" in figures
    assert all(
        (tmp_path / "report" / "figures" / p).read_bytes()[:4] == b"\x89PNG" for p in figures
    )
    assert not [p for p in (tmp_path / "report").rglob("*.tmp")]
    text = path.read_text()
    for f in figures:
        assert f"figures/{f}" in text
    assert text.count("**found**") == len(d.components)


def test_cli_json(tmp_path, capsys):
    model, spec = crafted("induction")
    save_model(model, tmp_path / "crafted.safetensors")
    save_model(without_induction(model), tmp_path / "trained.safetensors")
    parser = argparse.ArgumentParser()
    diff_cli.add_parser(parser.add_subparsers())
    argv = [
        "diff",
        str(tmp_path / "crafted.safetensors"),
        str(tmp_path / "trained.safetensors"),
        "--spec",
        str(library_path("induction")),
        "-o",
        str(tmp_path / "out"),
        "--n",
        "30",
        "--json",
    ]
    args = parser.parse_args(argv)
    assert args.run(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"] == {"prev-token": "partly", "induction:induction": "missing"}
    assert out["n_seqs"] == 30
    assert (tmp_path / "out" / "report.md").exists()
    args = parser.parse_args(argv[:-1])
    assert args.run(args) == 0
    text = capsys.readouterr().out
    assert "induction:induction" in text and "missing" in text
