"""Issue 12, items 4, 5, 6 and 8: the replay store cannot change a verdict, nothing is
written to the working folder, loosened bounds are said, and the shrinker reaches the
brute-force minimum where enumerating is cheap."""

from __future__ import annotations

import functools
import itertools
import os

import numpy as np
import pytest
import torch

import specs
from craft.compiler import compile_spec
from craft.models.layout import Direction
from verify.check import check_all, wilson_lower
from verify.claims import Claim, HeadRole, RuleHolds
from verify.defaults import default_claims, for_trained, retarget
from verify.replay import CACHE_ENV, model_digest, replay_dir
from verify.sweep import BRUTE, shrink

pytestmark = pytest.mark.usefixtures("one_thread")


@functools.cache
def spec_of(name: str):
    return specs.load_spec(specs.library_path(name))


def broken_bigram_model():
    model = compile_spec(spec_of("toy_language"), "standard").model
    with torch.no_grad():
        model.unembed.W_U[model.layout.index(Direction("tok", "bob"))] = 0
    return model


def test_the_verdict_does_not_depend_on_what_was_checked_before(tmp_path, monkeypatch):
    """One store, one claim: a broken model fails, then the correct model passes, then
    the broken one fails again with the same counterexample (replayed first); a check
    writes nothing into the working folder, with or without a store."""
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    store = tmp_path / "store"
    spec = spec_of("toy_language")
    claim = [Claim("holds:noun-bigrams", RuleHolds(rule="noun-bigrams", max_kl=1e-3))]
    bad, good = broken_bigram_model(), compile_spec(spec, "standard").model
    first = check_all(bad, spec, claim, examples=40, database=store)[0]
    middle = check_all(good, spec, claim, examples=40, database=store)[0]
    last = check_all(bad, spec, claim, examples=40, database=store)[0]
    assert not first.passed and middle.passed and not last.passed
    assert last.counterexample == first.counterexample
    assert last.found_after <= first.found_after  # replayed: found no later than the first time
    assert check_all(good, spec, claim, examples=40, database=None)[0].passed
    assert os.listdir(work) == []  # no .hypothesis, no .craft
    assert model_digest(bad) != model_digest(good)
    assert model_digest(good) == model_digest(compile_spec(spec, "standard").model)


def test_the_replay_store_lives_in_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    assert replay_dir() == tmp_path / "c" / "replay"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert replay_dir() == tmp_path / "x" / "craft" / "replay"


def test_loosened_bounds_are_said_and_can_be_kept():
    """--like lowers role thresholds to the matching's 0.3 and --tolerance raises KL
    bounds: each loosened claim says from what to what, and its result warns; with
    keep_thresholds the crafted 0.99 stays."""
    spec = spec_of("skip_trigram")
    model = compile_spec(spec, "standard").model
    claims = default_claims(model, spec)
    moved = retarget(claims, model, model, spec)
    roles = [c for c in moved if isinstance(c.body, HeadRole) and c.body.role != "copying"]
    assert roles and all(c.body.min_score == 0.3 and "0.99 -> 0.3" in c.loosened for c in roles)
    kept = retarget(claims, model, model, spec, keep_thresholds=True)
    assert all(c.body.min_score == 0.99 and not c.loosened for c in kept if c.name in
               {r.name for r in roles})  # fmt: skip
    loose = for_trained(claims[:1], tolerance=0.05, fraction=None)[0]
    assert "-> 0.05 (--tolerance)" in loose.loosened
    r = check_all(model, spec, [roles[0], loose], examples=20)
    assert all(any("bound loosened" in w for w in x.warnings) for x in r)
    assert all(x.loosened for x in r) and r[0].comparison().startswith("attention share")


def test_wilson_bound_is_one_sided_95_percent():
    """The Wilson lower bound L solves (p - L)^2 = z^2 L (1 - L) / n with z = 1.645
    (P(Z > z) = 0.05): 95 of 100 gives 0.9008 (z = 1.96, two-sided 95%, gave 0.888)."""
    low, z = wilson_lower(95, 100), 1.6448536
    assert (0.95 - low) ** 2 == pytest.approx(z * z * low * (1 - low) / 100, rel=1e-6)
    assert low == pytest.approx(0.9008, abs=1e-4)
    assert wilson_lower(100, 100) > wilson_lower(95, 100)


@pytest.mark.parametrize("seed", range(6))
def test_shrink_reaches_the_brute_force_minimum(seed):
    """Random predicates over 4 tokens; from a long failing context the shrinker (with
    the alphabet, so it may enumerate) returns exactly the smallest failing context of
    the shrink order, found here by enumerating every context of up to 5 tokens."""
    rng = np.random.default_rng(seed)
    weights, modulus, want = rng.integers(1, 5, size=4), int(rng.integers(3, 7)), 0

    def bad(c: list[int]) -> bool:
        return len(c) >= 2 and c[0] != c[-1] and sum(weights[t] for t in c) % modulus == want

    every = [list(c) for k in range(6) for c in itertools.product(range(4), repeat=k)]
    assert len(every) <= BRUTE
    failing = [c for c in every if bad(c)]
    best = min(failing, key=lambda c: (len(c), len(set(c)), c))
    start = next(c for c in (rng.integers(0, 4, size=30).tolist() for _ in range(10_000)) if bad(c))
    got, _ = shrink(start, lambda b: np.array([bad(c) for c in b]), lambda c: True, alphabet=4)
    assert got == best


def test_craft_check_no_replay_creates_no_folder(tmp_path, monkeypatch, capsys):
    """`craft check --no-replay` (issue 11): nothing appears in the working folder, not
    even Hypothesis' own `.hypothesis/`; the JSON says what each claim compares."""
    import json

    from craft.cli import main
    from craft.models import save_model

    model = tmp_path / "m.safetensors"
    save_model(compile_spec(spec_of("bigram"), "standard").model, model)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = ["check", str(model), "--spec", str(specs.library_path("bigram"))]
    assert main([*argv, "--examples", "20", "--no-replay", "--json"]) == 0
    assert os.listdir(work) == []
    out = json.loads(capsys.readouterr().out)["claims"]
    assert out and all(" <= max " in c["compares"] for c in out if c["kind"] == "rule_holds")
    assert all(c["coverage"]["distinct"] == c["examples"] for c in out if c["coverage"])
