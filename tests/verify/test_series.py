"""craft diff over a checkpoint series: a hand-made "training run" in which the
previous-token head appears at step 100 and the induction head at step 200."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from craft.cli import main
from craft.compiler import compile_spec
from craft.models import ComponentKind, component_records, save_model
from specs import library_path, load_spec
from specs.errors import CraftError
from verify.series import Point, Series, _settled, checkpoints, series, write_series

pytestmark = pytest.mark.usefixtures("one_thread")


def head_of(model, kind: ComponentKind) -> tuple[int, int]:
    rec = next(r for r in component_records(model) if r.kind == kind)
    return rec.layer, rec.head


def staged(model, *, prev: bool, induction: bool):
    """A copy with the previous-token head's QK (prev False) and the induction head's
    OV (induction False) zeroed; it names no components, like a trained model."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        if not prev:
            la, h = head_of(model, ComponentKind.PREVIOUS_TOKEN)
            out.blocks[la].attn.W_Q[h] = 0
            out.blocks[la].attn.W_K[h] = 0
        if not induction:
            la, h = head_of(model, ComponentKind.INDUCTION)
            out.blocks[la].attn.W_O[h] = 0
    out.meta = {}
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    spec = load_spec(library_path("induction"))
    model = compile_spec(spec, "standard").model
    folder = tmp_path_factory.mktemp("toy_run")
    stages = [(0, False, False), (100, True, False), (200, True, True), (300, True, True)]
    for step, prev, induction in stages:
        save_model(
            staged(model, prev=prev, induction=induction), folder / f"step_{step:06d}.safetensors"
        )
    (folder / "notes.txt").write_text("not a checkpoint")
    return model, spec, folder


def test_order_found_and_rules_learned(run, tmp_path):
    model, spec, folder = run
    s = series(model, folder, spec, n_seqs=30)
    assert [p.step for p in s.points] == [0, 100, 200, 300]
    assert s.found_at() == {"prev-token": 100, "induction:induction": 200}
    assert [c for c, _ in s.order()] == ["prev-token", "induction:induction"]
    assert s.learned_at()["induction"] == 200
    assert s.points[0].excess["induction"] > 1.0 and s.points[-1].excess["induction"] < 1e-6
    assert s.points[-1].similarity == {
        "prev-token": pytest.approx(1.0),
        "induction:induction": pytest.approx(1.0),
    }
    path = write_series(s, tmp_path)
    text = path.read_text()
    assert "Order found: prev-token (step 100), induction:induction (step 200)." in text
    for png in ("series_components.png", "series_rules.png"):
        assert (tmp_path / "figures" / png).read_bytes()[:4] == b"\x89PNG"
    json.dumps(s.to_json())


def test_settled_is_the_start_of_the_final_run():
    assert _settled([0, 1, 2, 3], [True, False, True, True]) == 2
    assert _settled([0, 1, 2], [True, True, False]) is None
    assert _settled([0, 1], [True, True]) == 0
    empty = Series("x", (Point(0, {"c": 0.0}, {"c": 0.0}, {"c": False}, {"r": 1.0}),), 1, 0)
    assert empty.found_at() == {"c": None} and empty.order() == []


def test_cli_over_a_run_folder(run, tmp_path, capsys):
    model, spec, folder = run
    save_model(model, tmp_path / "crafted.safetensors")
    common = [
        str(tmp_path / "crafted.safetensors"),
        str(folder),
        "--spec",
        str(library_path("induction")),
    ]
    code = main(["diff", *common, "-o", str(tmp_path / "series"), "-n", "20", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["order"] == ["prev-token", "induction:induction"]
    assert out["found_at"] == {"prev-token": 100, "induction:induction": 200}
    assert (tmp_path / "series" / "series.md").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["diff", common[0], str(empty), *common[2:], "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no step_NNNNNN.safetensors" in err
    assert not (tmp_path / "x").exists()
    with pytest.raises(CraftError):
        checkpoints(empty)
