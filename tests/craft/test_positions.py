"""Position-free crafted models (``craft compile --positions none``).

:func:`craft.compiler.positions.derive_positions` prepends a layer that re-derives the
learned position table; the derived model must meet the compiled model's bounds against
the spec's own distribution on sampled, random, targeted, near-miss and Hypothesis
contexts, and its layer 0 must write the table it replaces.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch
from exactness import last_kl, positions_kl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import specs
from craft.compiler import compile_spec
from craft.compiler.compact import Shape, compile_compact
from craft.compiler.positions import FLOAT32_LIMIT, derive_positions, position_code
from craft.models import load_model, save_model
from craft.models.components import ComponentKind, component_records
from specs.errors import CraftError
from specs.nearmiss import near_endings

LIBRARY = ["toy_language", "skip_trigram", "induction"]


@functools.cache
def spec_of(name: str):
    return specs.load_spec(specs.library_path(name))


@functools.cache
def pair(name: str):
    """(compiled with learned positions, its position-free derivation)."""
    compiled = compile_spec(spec_of(name), "standard")
    return compiled, derive_positions(compiled.model)


def _check(name: str, kl: np.ndarray, rules: np.ndarray, mean_bar: float | None) -> set[str]:
    bound, names = pair(name)[0].constants.bound, spec_of(name).rule_names()
    for rid in np.unique(rules):
        mask = rules == rid
        assert kl[mask].max() <= bound[names[rid]], (names[rid], kl[mask].max())
        if mean_bar is not None:
            assert kl[mask].mean() <= mean_bar, (names[rid], kl[mask].mean())
    return {names[r] for r in np.unique(rules)}


@pytest.mark.parametrize("name", LIBRARY)
def test_sampled_sequences_meet_the_bound(name):
    spec = spec_of(name)
    n = 600 if name == "toy_language" else 2000  # toy at 2,000: benchmarks/positions.py
    tokens, _ = specs.sample(spec, n, spec.max_len, seed=0)
    kl, rules = positions_kl(spec, pair(name)[1], tokens)
    assert len(_check(name, kl, rules, mean_bar=1e-3)) >= 2


@pytest.mark.parametrize("name", LIBRARY)
def test_random_strings_meet_the_bound(name):
    spec = spec_of(name)
    tokens = np.random.default_rng(1).integers(len(spec.vocab), size=(300, 1 + spec.max_len))
    tokens[:, 0] = len(spec.vocab)
    _check(name, *positions_kl(spec, pair(name)[1], tokens), mean_bar=None)


@pytest.mark.parametrize("name", LIBRARY)
def test_targeted_and_near_miss_contexts_meet_the_bound(name):
    spec, rng = spec_of(name), np.random.default_rng(2)
    contexts = [
        list(ctx)
        for i in range(len(spec.rules))
        for ctx in specs.contexts_for_rule(spec, i, rng, 20)
    ]
    contexts += [end for rule in spec.rules for end in near_endings(spec, rule, rng)]
    contexts = [c for c in contexts if 0 < len(c) <= spec.max_len]
    fired = _check(name, *last_kl(spec, pair(name)[1], contexts), mean_bar=None)
    assert {r.name for r in spec.rules} <= fired | {r.name for r in spec.rules[-1:]}


@settings(
    max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data())
def test_hypothesis_contexts_meet_the_bound(data):
    spec = spec_of("toy_language")
    ctx = data.draw(
        st.lists(st.integers(0, len(spec.vocab) - 1), min_size=1, max_size=spec.max_len)
    )
    _check("toy_language", *last_kl(spec, pair("toy_language")[1], [ctx]), mean_bar=None)


@pytest.mark.parametrize("name", LIBRARY)
def test_layer_zero_writes_the_learned_table(name):
    compiled, derived = pair(name)
    table = compiled.model.pos_embed.W_pos.detach()
    code = position_code(derived)[:, : table.shape[1]]
    assert torch.allclose(code, table, atol=2e-3), float((code - table).abs().max())
    assert derived.cfg.positions == "none" and not hasattr(derived.pos_embed, "W_pos")
    assert derived.meta["positions"]["code_error"] <= 2e-3


def test_the_derivation_is_what_makes_it_exact():
    """Without the position-code MLP the derived toy model is far off: the test can fail."""
    spec, (_, derived) = spec_of("toy_language"), pair("toy_language")
    broken = load_copy(derived)
    with torch.no_grad():
        broken.blocks[0].mlp.W_out.zero_()
    tokens, _ = specs.sample(spec, 50, spec.max_len, seed=3)
    assert positions_kl(spec, broken, tokens)[0].max() > 1.0


def load_copy(model):
    copy = type(model)(model.cfg).to(next(model.parameters()).dtype)
    copy.load_state_dict(model.state_dict())
    copy.layout, copy.meta = model.layout, dict(model.meta)
    return copy


def test_components_shift_up_one_layer():
    compiled, derived = pair("induction")
    before = component_records(compiled.model)
    after = component_records(derived)
    assert [r.kind for r in after[:2]] == [
        ComponentKind.POSITION_SHARE,
        ComponentKind.POSITION_CODE,
    ]
    assert [(r.name, r.layer + 1) for r in before] == [(r.name, r.layer) for r in after[2:]]


def test_the_source_model_is_unchanged_and_the_file_round_trips(tmp_path):
    compiled = compile_spec(spec_of("induction"), "standard")
    before = {k: v.clone() for k, v in compiled.model.state_dict().items()}
    derived = derive_positions(compiled.model)
    assert all(torch.equal(before[k], v) for k, v in compiled.model.state_dict().items())
    save_model(derived, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    tokens = torch.as_tensor(specs.sample(spec_of("induction"), 8, 32, seed=0)[0])
    with torch.no_grad():
        assert torch.equal(loaded(tokens), derived(tokens))


def test_compact_models_derive_positions_too():
    spec = spec_of("toy_language")
    model = compile_compact(spec, Shape.parse("2x4x64"), "standard").model
    derived = derive_positions(model)
    tokens, _ = specs.sample(spec, 200, spec.max_len, seed=4)
    with torch.no_grad():
        a = model(torch.as_tensor(tokens)).log_softmax(-1)
        b = derived(torch.as_tensor(tokens)).log_softmax(-1)
    assert torch.allclose(a, b, atol=1e-4)


def test_beyond_the_float32_limit_it_runs_in_float64():
    spec = dataclasses.replace(spec_of("induction"), max_len=2 * FLOAT32_LIMIT)
    model = compile_spec(spec, "standard").model
    derived = derive_positions(model)
    assert derived.meta["dtype"] == "float64"
    assert next(derived.parameters()).dtype == torch.float64
    assert derived.meta["positions"]["code_error"] <= 1e-9
    tokens, _ = specs.sample(spec, 20, spec.max_len, seed=5)
    kl, rules = positions_kl(spec, derived, tokens)
    assert kl.max() <= max(compile_spec(spec, "standard").constants.bound.values())
    with pytest.raises(CraftError, match="float32 limit is max_len 128"):
        derive_positions(model, "float32")


def test_the_tensor_family_is_refused_with_the_reason():
    model = compile_spec(spec_of("induction"), "tensor").model
    with pytest.raises(CraftError, match="tensor family cannot derive positions"):
        derive_positions(model)


def test_cli_compile_positions_none_then_eval(tmp_path, capsys):
    from craft.cli import main

    out = tmp_path / "pf.safetensors"
    spec = str(specs.library_path("induction"))
    assert main(["compile", spec, "-o", str(out), "--positions", "none"]) == 0
    assert "1 layer deriving positions" in capsys.readouterr().out
    assert main(["inspect", str(out)]) == 0
    assert "largest code error" in capsys.readouterr().out
    assert main(["eval", str(out), "--spec", spec, "-n", "50", "--json"]) == 0
    assert load_model(out).cfg.positions == "none"


def test_cli_refuses_a_position_free_tensor_model_in_one_line(tmp_path, capsys):
    from craft.cli import main

    out = tmp_path / "pf.safetensors"
    spec = str(specs.library_path("induction"))
    code = main(["compile", spec, "-o", str(out), "--positions", "none", "--family", "tensor"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--positions none" in err
    assert not out.exists()


def test_train_positions_none_has_no_position_table(tmp_path, capsys):
    from craft.cli import main

    out = tmp_path / "t.safetensors"
    argv = ["train", str(specs.library_path("induction")), "-o", str(out), "--positions", "none"]
    argv += ["--steps", "5", "--batch", "4", "--d-model", "16", "--heads", "2", "--plot", "none"]
    assert main([*argv, "--no-progress", "--device", "cpu", "--eval-batch", "8"]) == 0
    model = load_model(out)
    assert model.cfg.positions == "none" and "pos_embed.W_pos" not in model.state_dict()


def test_train_runs_on_the_bracket_spec(tmp_path):
    """A bracket rule trains, and its loss curve groups it under its YAML key."""
    from craft.cli import main
    from craft.train.plot import rule_groups

    spec_path = specs.library_path("toy_language_brackets")
    out = tmp_path / "b.safetensors"
    argv = ["train", str(spec_path), "-o", str(out), "--steps", "3", "--batch", "4"]
    argv += ["--d-model", "16", "--heads", "2", "--no-progress", "--device", "cpu"]
    assert main([*argv, "--eval-batch", "8", "--length", "16"]) == 0
    assert (tmp_path / "b.loss.png").is_file() and out.is_file()
    assert rule_groups(specs.load_spec(spec_path))["close-bracket"] == "bracket"
