"""craft.train: the loop on tiny configs (a few seconds on 2 CPU cores in all)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch

import specs
from craft.models import Transformer, load_model
from craft.train import TrainConfig, excess_by_rule, make_eval_set, run_dir_for, train
from craft.train.init import QK_NAMES, clamp_qk, init_weights
from craft.train.loop import model_config, step_seed
from craft.train.plot import plot_records, rule_groups

SPEC = specs.load_spec(specs.library_path("bigram"))
TINY = TrainConfig(
    d_model=16, n_heads=2, steps=60, batch=32, lr=1e-2, eval_every=20, eval_batch=64, device="cpu"
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # Small models run faster on one thread, and much faster on a shared, busy CPU.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "bigram.safetensors"
    log = out.with_suffix(".log.jsonl")
    torch.set_num_threads(1)
    cfg = replace(TINY, save_every=20)
    result = train(SPEC, cfg, output=out, log_path=log)
    return result, out, log


def test_loss_decreases_and_bigram_excess_is_small(run) -> None:
    result, _, _ = run
    first, last = result.records[1], result.records[-1]
    assert last["loss"] < first["loss"]
    assert last["excess"]["overall"] < 0.2
    assert last["excess"]["overall"] < result.records[0]["excess"]["overall"] / 5


def test_same_seed_same_bytes(tmp_path) -> None:
    """Run facts (wall time) stay in the log: one seed gives one model file, byte for byte."""
    cfg = replace(TINY, steps=4, eval_every=4)
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    train(SPEC, cfg, output=a)
    train(SPEC, cfg, output=b)
    assert a.read_bytes() == b.read_bytes()
    assert load_model(a).meta["spec"]["source"] == "bigram.yaml"


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    cfg = replace(TINY, steps=8, eval_every=8)
    a, b = train(SPEC, cfg).model, train(SPEC, cfg).model
    c = train(SPEC, replace(cfg, seed=1)).model
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    pairs = zip(a.parameters(), c.parameters(), strict=True)
    assert any(not torch.equal(pa, pc) for pa, pc in pairs)
    assert step_seed(0, 1) != step_seed(0, 2) != step_seed(1, 1)


def test_checkpoints_at_multiples_and_loadable(run) -> None:
    result, out, _ = run
    run_dir = run_dir_for(out)
    assert run_dir == out.parent / "bigram_run"
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == [f"step_{n:06d}.safetensors" for n in (0, 20, 40, 60)]
    ckpt = load_model(run_dir / "step_000040.safetensors")
    assert ckpt.meta["training"]["steps_done"] == 40
    assert ckpt.meta["spec"] == SPEC.provenance()
    final = load_model(out)
    last = load_model(run_dir / "step_000060.safetensors")
    for p, q in zip(final.parameters(), last.parameters(), strict=True):
        assert torch.equal(p, q)
    assert final.meta["training"]["final_excess"] == result.final_excess
    assert final.meta["training"]["seed"] == 0 and final.meta["training"]["steps"] == 60


def test_log_is_jsonl_with_every_field(run) -> None:
    result, _, log = run
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in lines] == [0, 20, 40, 60]
    assert lines == json.loads(json.dumps(result.records))
    for rec in lines[1:]:
        assert set(rec) == {"step", "loss", "lr", "excess", "worst_rule", "wall_s"}
        assert set(SPEC.rule_names()) >= set(rec["excess"]) - {"overall"}
        assert 0 < rec["lr"] <= TINY.lr


def test_plot_writes_png(run, tmp_path) -> None:
    result, _, _ = run
    path = plot_records(result.records, tmp_path / "loss.png", groups=rule_groups(SPEC))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rules_are_grouped_by_kind_and_determinism() -> None:
    toy = specs.load_library("toy_language")
    groups = rule_groups(toy)
    assert set(groups) == set(toy.rule_names())
    assert sorted(set(groups.values())) == [
        "bigram",
        "induction",
        "skip-bigram (deterministic)",
        "start",
        "trigram (deterministic)",
        "trigram (distribution)",
    ]
    assert groups["func-noun"] == "trigram (distribution)" and groups["the-alice"] != "bigram"


@pytest.mark.parametrize("control", ["clamp", "penalty"])
def test_tensor_family_trains_without_nan(control: str) -> None:
    cfg = replace(TINY, family="tensor", qk_control=control)
    result = train(SPEC, cfg)
    assert result.model.cfg.positions == "rotary"
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    assert result.final_excess["overall"] < 0.2
    if control == "clamp":
        bound = result.config.qk_max_norm
        for name, p in result.model.named_parameters():
            if name.rsplit(".", 1)[-1] in QK_NAMES:
                assert (p.flatten(1).norm(dim=1) <= bound * (1 + 1e-5)).all()


def test_init_is_seeded_and_nonzero_and_clamp_bounds_norms() -> None:
    cfg = TrainConfig(family="tensor", d_model=16, n_heads=2).resolve(SPEC)
    a, b = Transformer(model_config(cfg, SPEC)), Transformer(model_config(cfg, SPEC))
    init_weights(a, 3)
    init_weights(b, 3)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q) and p.abs().sum() > 0
    clamp_qk(a, 0.5)
    norms = a.blocks[0].attn.W_Q1.flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.full_like(norms, 0.5), atol=1e-6)


def test_excess_of_uniform_model_matches_kl_to_uniform() -> None:
    cfg = TrainConfig(d_model=16, n_heads=2).resolve(SPEC)
    model = Transformer(model_config(cfg, SPEC))  # all zeros: uniform predictions
    data = make_eval_set(SPEC, 16, 8, seed=0)
    excess = excess_by_rule(model, data)
    v = len(SPEC.vocab)
    p = data.p
    entropy = -torch.where(p > 0, p * p.log(), torch.zeros_like(p)).sum(-1)
    expected = (torch.log(torch.tensor(float(v))) - entropy).mean()
    assert excess["overall"] == pytest.approx(float(expected), abs=1e-5)
