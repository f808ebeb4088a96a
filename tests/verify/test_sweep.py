"""The sweep (verify.sweep): its draws satisfy the claims' conditions, its shrinker
reaches known minima, and it finds a defect Hypothesis' short contexts cannot reach,
then replays it first."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

import specs
from craft.cli import main
from craft.compiler import compile_spec
from craft.models import save_model
from verify.check import check_claim
from verify.claims import Claim, RuleHolds
from verify.strategies import fired
from verify.sweep import (
    contexts_sweep,
    counterfactual_sweep,
    repeated_sweep,
    shrink,
    window_sweep,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@functools.cache
def toy():
    return specs.load_spec(specs.library_path("toy_language"))


def _fails(pred):
    return lambda batch: np.array([pred(x) for x in batch])


def test_shrink_reaches_the_known_minimum_of_a_context():
    """Fails when the 7th token from the end is 3: the minimum is 3 then six 0s."""
    rng = np.random.default_rng(0)
    ctx = rng.integers(0, 9, size=30).tolist()
    ctx[-7] = 3
    small, tried = shrink(ctx, _fails(lambda c: len(c) >= 7 and c[-7] == 3), lambda c: True)
    assert small == [3, 0, 0, 0, 0, 0, 0] and tried > 0


def test_shrink_edits_a_pair_position_by_position():
    """Pairs that must end alike and differ at their first token: the minimum keeps one
    differing token and zeros everything else, in both contexts."""
    rng = np.random.default_rng(1)
    a, b = rng.integers(1, 9, size=12).tolist(), rng.integers(1, 9, size=12).tolist()
    b[-1], b[0] = a[-1], (a[0] % 8) + 1
    valid = lambda pr: len(pr[0]) == len(pr[1]) >= 1 and pr[0][-1] == pr[1][-1]  # noqa: E731
    (x, y), _ = shrink((a, b), _fails(lambda pr: len(pr[0]) >= 3 and pr[0][0] != pr[1][0]), valid)
    assert len(x) == 3 and x[1:] == y[1:] == [0, 0]
    assert x[0] != y[0] and 0 in (x[0], y[0])


@pytest.mark.parametrize("rule", [r.name for r in toy().rules])
def test_context_sweeps_make_their_rule_fire(rule):
    sweep = contexts_sweep(toy(), rule, lambda c: True)
    drawn = sweep.draw(np.random.default_rng(2), 64)
    assert len(drawn) >= 32 and all(fired(toy(), c) == rule for c in drawn)
    assert all(sweep.valid(c) for c in drawn)
    assert len({tuple(c) for c in drawn}) > len(drawn) // 2  # not one context repeated


def test_pair_and_repeat_sweeps_hold_their_conditions():
    spec, rng = toy(), np.random.default_rng(3)
    window = window_sweep(spec, "beach-big", 9)
    pairs = window.draw(rng, 64)
    assert pairs and all(window.valid(p) for p in pairs)
    assert all(a[-10:] == b[-10:] and a[:-10] != b[:-10] for a, b in pairs)
    swaps = counterfactual_sweep(spec, "NOUN", "noun-induction")
    pairs = swaps.draw(rng, 64)
    assert pairs and all(swaps.valid(p) for p in pairs)
    assert all(a != b and fired(spec, b) == "noun-induction" for a, b in pairs)
    rep = repeated_sweep(spec, None)
    drawn = rep.draw(rng, 64)
    assert drawn and all(c[-1] in c[:-1] for c in drawn)  # the current token occurred before
    assert max(len(c) for c in drawn) > spec.max_len // 2  # copies at late positions too
    assert not window.valid(([1, 2], [1, 2]))


def test_a_long_context_defect_is_found_minimal_and_replayed(tmp_path):
    """Positions from 36 on lose their positional embedding, so the previous-token head
    breaks there. Contexts now run to max_len (128) in both phases: Hypothesis alone
    finds it, and so does the sweep; the minimal counterexample has exactly 36 tokens.
    The replay store is keyed by the model's digest: the same inputs replay it first, a
    fixed model with the same store does not inherit the failure."""
    spec = toy()
    model = compile_spec(spec, "standard").model
    with torch.no_grad():
        model.pos_embed.W_pos[36:] = 0
    claim = Claim("holds:the-alice", RuleHolds(rule="the-alice", max_kl=1e-3))
    alone = check_claim(model, spec, claim, examples=100, sweep=0)
    assert not alone.passed and len(alone.counterexample) == 36
    db = tmp_path / "db"
    r = check_claim(model, spec, claim, examples=100, database=db)
    assert not r.passed and len(r.counterexample) == 36 and r.found_after > 1
    assert r.counterexample[-2:] == ["the", "alice"]
    again = check_claim(model, spec, claim, examples=100, database=db)
    assert again.found_after == 1 and again.counterexample == r.counterexample
    fixed = compile_spec(spec, "standard").model
    assert check_claim(fixed, spec, claim, examples=100, database=db).passed


def test_craft_check_sweep_flag(tmp_path, capsys):
    """`--sweep 0` runs Hypothesis alone (which now reaches the long-context defect too);
    the default sweep adds distinct contexts to a passing claim; both report the same
    minimal counterexample on the broken model."""
    spec = toy()
    model = compile_spec(spec, "standard").model
    with torch.no_grad():
        model.pos_embed.W_pos[36:] = 0
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    claims = tmp_path / "claims.yaml"
    claims.write_text(
        "format: craft-claims/1\nclaims:\n"
        "  - {name: alice, rule_holds: {rule: the-alice, max_kl: 0.001}}\n"
    )
    argv = ["check", str(path), "--spec", specs.library_path("toy_language").as_posix()]
    argv += ["--claims", str(claims), "--examples", "100", "--no-replay", "--json"]
    assert main([*argv, "--sweep", "0"]) == 1
    alone = json.loads(capsys.readouterr().out)["claims"][0]
    assert main(argv) == 1
    found = json.loads(capsys.readouterr().out)["claims"][0]
    assert len(found["counterexample"]) == 36 == len(alone["counterexample"])
    fixed = tmp_path / "fixed.safetensors"
    save_model(compile_spec(spec, "standard").model, fixed)
    argv[1] = str(fixed)
    counts = []
    for extra in (["--sweep", "0"], []):
        assert main([*argv, *extra]) == 0
        counts.append(json.loads(capsys.readouterr().out)["claims"][0]["examples"])
    assert counts[1] > counts[0] + 100
