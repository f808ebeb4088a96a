"""Copy rules (craft.compiler.kinds.copy) against the spec's exact distribution.

Two specs: the library spec ``previous_token`` (copy offset 1 above a uniform
bigram) and a hand-written one with a copy rule of offset 3 below a non-deterministic
trigram (a gate), a deterministic trigram, and above a bigram on one cue. For both
families: mean KL <= 1e-3 per rule on 2,000 sampled sequences and max KL <= the compiled
bound on sampled positions, random strings, targeted and near-miss contexts and
Hypothesis contexts; a broken head misses the bound; the compact compiler builds the
copy task exactly and refuses a gated copy rule in one line; ``craft compile
--positions none`` then ``craft eval`` meets the bound.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from exactness import check_bounds, last_kl, positions_kl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import specs
from craft.compiler import compile_spec
from craft.compiler.compact import Shape, compile_compact, prepare
from craft.compiler.conditions import condition_mask
from craft.compiler.kinds import kind_of
from craft.compiler.kinds.copy import COPY
from craft.models.components import ComponentKind
from specs.errors import CraftError
from specs.nearmiss import near_endings

OFFSET3 = """
format: craft-spec/1
name: copy-offset-three
vocab:
  SYM: [a, b, c, d, e, f]
  CUE: ["?", "!"]
max_len: 16
start: {SYM: 1}
rules:
  - name: a-ask
    trigram: {after: [a, "?"], next: {b: 0.5, c: 0.5}}
  - name: b-bang
    trigram: {after: [b, "!"], next: {d: 1}}
  - name: copy-three
    copy: {cue: CUE, offset: 3}
  - name: bang-e
    bigram: {"!": {e: 1}}
  - name: uniform
    bigram: {"*": {"*": 1}}
"""

SPECS = ["previous_token", "offset3"]
FAMILIES = ["standard", "tensor"]
CASES = [(s, f) for s in SPECS for f in FAMILIES]
COPY_RULE = {"previous_token": "copy-previous", "offset3": "copy-three"}


@functools.cache
def spec_of(name: str):
    if name == "previous_token":
        return specs.load_spec(specs.library_path("previous_token"))
    return specs.parse_spec(OFFSET3)


@functools.cache
def compiled(name: str, family: str):
    return compile_spec(spec_of(name), family)


def check_positions(name, family, tokens, mean_bar, model=None):
    c = compiled(name, family)
    return check_bounds(spec_of(name), c, tokens, mean_bar, model)[0]


def check_contexts(name, family, contexts):
    spec, c = spec_of(name), compiled(name, family)
    kl, rules = last_kl(spec, c.model, contexts)
    names = spec.rule_names()
    for i, ctx in enumerate(contexts):
        padded = np.array([[len(spec.vocab), *ctx]])
        if condition_mask(c.conditions, c.analysis, padded)[0, -1]:
            assert kl[i] <= c.constants.bound[names[rules[i]]], (names[rules[i]], ctx, kl[i])
    return {names[r] for r in rules}


def test_copy_rules_have_a_kind_and_a_head():
    spec = spec_of("offset3")
    assert kind_of(spec.rules[2]) is COPY
    c = compiled("offset3", "standard")
    info = c.analysis.info("copy-three")
    assert info.window == (3, 3) and info.anchor is None and info.deterministic
    assert [g.name for g in c.analysis.gates(info)] == ["a-ask"]
    comps = [r for r in c.model.meta["components"] if r["kind"] == ComponentKind.COPY.value]
    assert [r["name"] for r in comps] == ["copy:copy-three"]
    assert compiled("previous_token", "standard").model.cfg.n_layers == 1


@pytest.mark.parametrize("name,family", CASES)
def test_sampled_sequences(name, family):
    spec = spec_of(name)
    tokens, _ = specs.sample(spec, 2000, spec.max_len, seed=0)
    seen = check_positions(name, family, tokens, mean_bar=1e-3)
    assert COPY_RULE[name] in seen


@pytest.mark.parametrize("name,family", CASES)
def test_random_strings(name, family):
    spec = spec_of(name)
    rng = np.random.default_rng(1)
    tokens = rng.integers(len(spec.vocab), size=(300, 1 + spec.max_len))
    tokens[:, 0] = len(spec.vocab)
    assert COPY_RULE[name] in check_positions(name, family, tokens, mean_bar=None)


@pytest.mark.parametrize("name,family", CASES)
def test_targeted_contexts(name, family):
    spec, c = spec_of(name), compiled(name, family)
    rng = np.random.default_rng(2)
    contexts = [
        list(ctx)
        for i in range(len(spec.rules))
        for ctx in specs.contexts_for_rule(spec, i, rng, 40)
    ]
    fired = check_contexts(name, family, contexts)
    live = {r.name for r in c.analysis.rules}
    assert live <= fired, live - fired


@pytest.mark.parametrize("name,family", CASES)
def test_near_miss_contexts(name, family):
    """Cue at ``t = offset``, distinct tokens at ``offset`` and ``offset + 1``, a copied
    cue, a non-cue: after random prefixes of every length (0 keeps the BOS boundary)."""
    spec = spec_of(name)
    rng = np.random.default_rng(4)
    contexts = []
    for rule in spec.rules:
        for _ in range(10):
            for end in near_endings(spec, rule, rng):
                room = spec.max_len - len(end)
                for n in {0, 1, int(rng.integers(0, room + 1))}:
                    if n <= room:
                        contexts.append([*rng.integers(len(spec.vocab), size=n).tolist(), *end])
    assert COPY_RULE[name] in check_contexts(name, family, contexts)


@pytest.mark.parametrize("name,family", CASES)
@settings(
    max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data())
def test_hypothesis_contexts(name, family, data):
    spec = spec_of(name)
    v = len(spec.vocab)
    ctx = data.draw(st.lists(st.integers(0, v - 1), min_size=1, max_size=spec.max_len))
    check_contexts(name, family, [ctx])


@pytest.mark.parametrize("name,family", CASES)
def test_bounds_are_useful(name, family):
    bounds = compiled(name, family).constants.bound
    assert set(bounds) >= set(spec_of(name).rule_names())
    assert max(bounds.values()) <= 1e-3


def test_constants_follow_the_margin():
    """``L = M + ln n + ln C_max``: ``B = L``, ``C = G = K = 2L`` (tensor family: 0)."""
    k = compiled("offset3", "standard").constants
    big = k.scores["copy BOS B"]
    assert big > k.margin
    for label in ("copy target C", "copy non-cue G", "copy gate K"):
        assert k.scores[label] == pytest.approx(2 * big)
    assert compiled("offset3", "tensor").constants.scores["copy target C"] == 0.0


@pytest.mark.parametrize("name", SPECS)
def test_a_broken_copy_head_misses_the_bound(name):
    """Zeroing the copy head's OV breaks exactly the copy rule: the tests have teeth."""
    spec = spec_of(name)
    c = compile_spec(spec, "standard")
    rec = next(r for r in c.model.meta["components"] if r["kind"] == ComponentKind.COPY.value)
    with torch.no_grad():
        c.model.blocks[rec["layer"]].attn.W_V[rec["head"]].zero_()
    tokens, _ = specs.sample(spec, 100, spec.max_len, seed=3)
    kl, rules = positions_kl(spec, c.model, tokens)
    names = np.array(spec.rule_names())[rules]
    copy = COPY_RULE[name]
    assert kl[names == copy].max() > c.constants.bound[copy]
    assert kl[names == copy].mean() > 1.0


def test_the_compact_compiler_builds_the_copy_task_exactly():
    """previous_token in the smallest attention-only shape (1 x 1 x 40, one positional
    head): every rule within its bound on sampled sequences and random strings."""
    spec = spec_of("previous_token")
    shape = prepare(spec).need.smallest()
    assert (shape.n_layers, shape.n_heads) == (1, 1)
    c = compile_compact(spec, shape)
    rng = np.random.default_rng(5)
    random = rng.integers(len(spec.vocab), size=(300, 1 + spec.max_len))
    random[:, 0] = len(spec.vocab)
    sampled, _ = specs.sample(spec, 300, spec.max_len, seed=5)
    for tokens in (sampled, random):
        kl, rules = positions_kl(spec, c.model, tokens)
        names = np.array(spec.rule_names())[rules]
        for name in np.unique(names):
            assert kl[names == name].max() <= c.constants.bound[name], name
        assert "copy-previous" in np.unique(names)


def test_the_compact_compiler_refuses_a_gated_copy_rule_in_one_line():
    with pytest.raises(CraftError) as err:
        compile_compact(spec_of("offset3"), Shape.parse("2x4x64"))
    msg = str(err.value)
    assert "\n" not in msg and "cannot build copy copy-three gated by a-ask" in msg


def test_compile_positions_none_then_eval_meets_the_bound(tmp_path, capsys):
    from craft.cli import main

    spec_path = str(specs.library_path("previous_token"))
    out = tmp_path / "copy.safetensors"
    assert main(["compile", spec_path, "-o", str(out), "--positions", "none"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--spec", spec_path, "-n", "300", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    bound = compiled("previous_token", "standard").constants.bound
    rules = (
        result["rules"]
        if isinstance(result["rules"], dict)
        else {r["rule"]: r for r in result["rules"]}
    )
    assert "copy-previous" in rules
    for rule, row in rules.items():
        assert row["max_kl"] <= bound[rule], (rule, row)
