"""Tensor-family induction in the float type it needs (issue #15).

The recency weights of tensor induction grow as ``3**max_len``
(:func:`craft.compiler.analysis.recency`), so past a length the model's logits outgrow
float32. The compiler picks float64 there, records it in the file (the tensors are
float64, ``meta["dtype"]`` says so), ``load_model`` restores it, and the report states
the float32 limit: the largest ``max_len`` at which float32 still meets the bound,
checked here at that very length. ``--dtype float32`` beyond it is one line.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch
from exactness import last_kl, positions_kl

import specs
from craft.compiler import compile_spec
from craft.compiler.analysis import analyse
from craft.compiler.constants import float_limit
from craft.models import load_model, save_model
from tests.refusals import error_line, run

TOY = specs.load_library("toy_language")


@functools.cache
def limit() -> int:
    return float_limit(analyse(TOY), "tensor")


def at(max_len: int):
    return dataclasses.replace(TOY, max_len=max_len)


def test_float32_meets_the_bound_at_its_stated_limit() -> None:
    spec = at(limit())
    c = compile_spec(spec, "tensor")
    assert c.constants.dtype == "float32" and c.model.embed.W_E.dtype == torch.float32
    tokens, _ = specs.sample(spec, 300, spec.max_len, seed=1)
    kl, rules = positions_kl(spec, c.model, tokens)
    names = spec.rule_names()
    for rid in np.unique(rules):
        assert kl[rules == rid].max() <= c.constants.bound[names[rid]], names[rid]
    alice, bob, sees, runs = (spec.vocab.index(t) for t in ("alice", "bob", "sees", "runs"))
    filler = [bob, runs] * ((spec.max_len - 8) // 2)  # the first copy at the far end
    late = [*filler, alice, runs, bob, runs, alice, sees, alice]
    kl, _ = last_kl(spec, c.model, [late, late[len(filler) :]])
    assert (kl <= c.constants.bound["noun-induction"]).all()


def test_one_past_the_limit_runs_in_float64(tmp_path) -> None:
    c = compile_spec(at(limit() + 1), "tensor")
    assert c.constants.dtype == "float64" and c.model.meta["dtype"] == "float64"
    save_model(c.model, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.embed.W_E.dtype == torch.float64
    tokens = torch.from_numpy(specs.sample(at(limit() + 1), 4, limit() + 1, seed=0)[0])
    with torch.no_grad():
        assert torch.equal(loaded(tokens), c.model(tokens))


def test_no_induction_no_limit() -> None:
    assert float_limit(analyse(specs.load_library("skip_trigram")), "tensor") is None
    assert float_limit(analyse(TOY), "standard") is None


def test_float32_beyond_the_limit_is_one_line(tmp_path, capsys) -> None:
    toy = specs.library_path("toy_language")
    out = tmp_path / "m.safetensors"
    argv = ["compile", toy, "--family", "tensor", "--dtype", "float32", "-o", out]
    code, _, err = run(capsys, *argv)
    error_line(code, err, "--dtype float32", f"max_len <= {limit()}", "max_len is 128")
    assert not out.exists()


def test_verify_reads_the_conditions_each_model_states() -> None:
    """The one-hot tensor compiler states no followers-agree, the compact one does:
    ``stated`` gives each model's own, for eval and check to mask with."""
    from craft.compiler.compact import compile_compact, prepare
    from craft.compiler.conditions import stated

    spec = specs.load_library("induction")
    one_hot = compile_spec(spec, "tensor").model
    compact = compile_compact(spec, prepare(spec, family="tensor").need.smallest(), "tensor")
    an = analyse(spec)
    assert stated(an, one_hot.meta) == ()
    assert [c.kind for c in stated(an, compact.model.meta)] == ["followers-agree"]


def test_a_two_anchor_readout_below_a_boost_cannot_outweigh_it() -> None:
    """skip_trigram: red-ask (deterministic) fires over blue-cue, whose readout writes
    once per blue in its window; the boost is scaled by that count (was KL 0.69)."""
    spec = specs.load_library("skip_trigram")
    c = compile_spec(spec, "tensor")
    red, blue, ask = (spec.vocab.index(t) for t in ("red", "blue", "ask"))
    kl, rules = last_kl(spec, c.model, [[red, blue, blue, ask], [red, blue, ask]])
    assert [spec.rule_names()[r] for r in rules] == ["red-ask", "red-ask"]
    assert (kl <= c.constants.bound["red-ask"]).all()


def test_craft_check_finds_a_too_small_recency_ratio(monkeypatch) -> None:
    """The default claim of a tensor induction rule fails on a model whose recency ratio
    is too small (1.2), with a short counterexample at which the OUTPUT is wrong; the
    same claim passes on the correct model."""
    import craft.compiler.analysis as analysis
    from verify.check import check_all
    from verify.defaults import default_claims

    spec = specs.load_library("induction")
    good = compile_spec(spec, "tensor").model
    claim = [c for c in default_claims(good, spec) if c.name == "holds:induction"]
    monkeypatch.setattr(analysis, "RATIO", 1.2)
    broken = compile_spec(spec, "tensor").model
    monkeypatch.undo()
    [bad] = check_all(broken, spec, claim, examples=60, sweep=60)
    assert not bad.passed and bad.counterexample is not None
    ctx = [spec.vocab.index(t) for t in bad.counterexample]
    kl, rules = last_kl(spec, broken, [ctx])
    assert spec.rule_names()[rules[0]] == "induction" and kl[0] > 1e-3
    assert len(ctx) <= 12  # the first copy, two or more later ones with another follower
    [ok] = check_all(good, spec, claim, examples=60, sweep=60)
    assert ok.passed


def test_a_count_that_cannot_change_the_output_states_no_condition() -> None:
    """skip_trigram's blue-cue (berry, cherry 1/2 after a CUE row uniform on ANS) is
    exact with any number of blues in its window (conditions.count_harmless), so the
    tensor model states no condition; 1 to 4 blues before the cue, all within bound."""
    spec = specs.load_library("skip_trigram")
    c = compile_spec(spec, "tensor")
    assert c.conditions == ()
    blue, ask, um = (spec.vocab.index(t) for t in ("blue", "ask", "um"))
    ctxs = [[blue] * k + [um] * (4 - k) + [ask] for k in range(1, 5)]
    kl, rules = last_kl(spec, c.model, ctxs)
    assert {spec.rule_names()[r] for r in rules} == {"blue-cue"}
    assert (kl <= c.constants.bound["blue-cue"]).all()
