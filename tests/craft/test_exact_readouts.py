"""Tensor-family readouts made exact with extra layers (craft.compiler.kinds.shared).

A spec whose non-deterministic rules count anchors (two skip-bigrams) and are gated by
higher non-deterministic rules that can fire together (a trigram and a skip-bigram):
with layers to spare the tensor model states no condition and every rule meets its
bound on every context (sampled, random, targeted, near-miss, Hypothesis); under
``--layers`` it falls back to one readout layer and states the conditions, which are
shown to be real. The product tree is exact ``[c = 0]`` on 0..W.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from exactness import last_kl, positions_kl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import specs
from craft.compiler import compile_spec
from craft.compiler.conditions import condition_mask
from craft.compiler.kinds.shared import none_factors, tree_peak
from craft.models.layout import Direction
from specs.errors import CraftError
from specs.nearmiss import near_endings

GATED = """
format: craft-spec/1
name: gated-counts
vocab: {K: [a, b], C: [c], A: [x, y, z]}
max_len: 12
start: {K: 1}
rules:
  - name: g1
    trigram: {after: [a, c], next: {x: 0.5, y: 0.5}}
  - name: g2
    skip_bigram: {anchor: b, cue: c, window: [2, 4], next: {y: 0.5, z: 0.5}}
  - name: r
    skip_bigram: {anchor: a, cue: c, window: [1, 5], next: {x: 0.25, z: 0.75}}
  - bigram:
      c: {x: 0.6, y: 0.2, z: 0.2}
      "*": {K: 0.4, C: 0.3, A: 0.3}
"""


@functools.cache
def spec():
    return specs.parse_spec(GATED)


@functools.cache
def compiled(layers: int | None = None):
    return compile_spec(spec(), "tensor", layers=layers)


def check(tokens: np.ndarray, mean_bar: float | None = None) -> set[str]:
    c = compiled()
    kl, rules = positions_kl(spec(), c.model, tokens)
    names = spec().rule_names()
    for rid in np.unique(rules):
        mask = rules == rid
        assert kl[mask].max() <= c.constants.bound[names[rid]], (names[rid], kl[mask].max())
        if mean_bar is not None:
            assert kl[mask].mean() <= mean_bar
    return {names[r] for r in np.unique(rules)}


def test_no_condition_and_the_layers_it_costs():
    c = compiled()
    assert c.conditions == () and c.model.meta["conditions"] == []
    assert c.model.cfg.n_layers == 6  # r's OR (3 levels), its 3 factors (2), then x [x_t = v]
    kinds = [r["kind"] for r in c.model.meta["components"]]
    assert kinds.count("product") == 3 + 2 + 2 + 1  # none:r, none:g2, read:r, read:g2
    said = c.model.meta["products"]  # the compile report says which layers and why
    assert len(said) == 4 and any("[r does not fire]" in x and "3 bilinear" in x for x in said)
    assert compiled(2).model.meta["products"] == []
    assert compile_spec(spec(), "standard").model.cfg.n_layers == 2


def test_sampled_and_random_contexts_meet_the_bound_everywhere():
    s = spec()
    tokens, _ = specs.sample(s, 2000, s.max_len, seed=0)
    assert {"g1", "g2", "r"} <= check(tokens, mean_bar=1e-3)
    rng = np.random.default_rng(1)
    tokens = rng.integers(len(s.vocab), size=(3000, 1 + s.max_len))
    tokens[:, 0] = len(s.vocab)
    assert {"g1", "g2", "r"} <= check(tokens)


def test_targeted_and_near_miss_contexts_meet_the_bound():
    s, c = spec(), compiled()
    rng = np.random.default_rng(2)
    contexts = [
        list(x) for i in range(len(s.rules)) for x in specs.contexts_for_rule(s, i, rng, 40)
    ]
    for rule in s.rules:
        for _ in range(6):
            contexts += [list(end) for end in near_endings(s, rule, rng)]
    kl, rules = last_kl(s, c.model, contexts)
    names = s.rule_names()
    for i in range(len(contexts)):
        assert kl[i] <= c.constants.bound[names[rules[i]]], (contexts[i], kl[i])


@settings(
    max_examples=80, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data())
def test_hypothesis_contexts(data):
    s, c = spec(), compiled()
    ctx = data.draw(st.lists(st.integers(0, len(s.vocab) - 1), min_size=1, max_size=s.max_len))
    kl, rules = last_kl(s, c.model, [ctx])
    assert kl[0] <= c.constants.bound[s.rule_names()[rules[0]]]


def test_under_a_layer_limit_the_conditions_come_back_and_are_real():
    """Two layers: one readout layer, so counts and co-firing gates are conditions, and
    outside them the model is wrong: the extra layers are what makes it exact."""
    s, c = spec(), compiled(2)
    assert c.model.cfg.n_layers == 2
    assert {x.kind for x in c.conditions} == {"not-together", "single-anchor"}
    a, b, cue, x = (s.vocab.index(t) for t in "abcx")
    outside = [[a, a, cue], [b, a, a, cue], [a, b, b, x, cue]]  # two anchors; two b gate r
    kl, _ = last_kl(s, c.model, outside)
    for ctx in outside:
        tokens = np.array([[len(s.vocab), *ctx]])
        assert not condition_mask(c.conditions, c.analysis, tokens)[0, -1]
    assert kl.min() > 1e-3
    exact, _ = last_kl(s, compiled().model, outside)
    assert exact.max() <= max(compiled().constants.bound.values())


@pytest.mark.parametrize("width", range(1, 10))
def test_the_none_tree_is_exactly_zero_count(width):
    """prod_k (1 - c/k) is 1 at c = 0 and 0 at c = 1..W, in the tree's own pairing."""
    fire = Direction("fire", None)
    for count in range(width + 1):
        level = [1.0 + f[fire] * count for f in none_factors(fire, width)]
        while len(level) > 1:
            level = [x * y for x, y in zip(level[::2], [*level[1::2], 1.0], strict=False)]
        assert level[0] == (1.0 if count == 0 else 0.0)
    assert tree_peak(width) >= 1.0


def test_layers_through_the_cli(tmp_path, capsys):
    from craft.cli import main

    path = tmp_path / "gated.yaml"
    path.write_text(GATED, encoding="utf-8")
    out = tmp_path / "m.safetensors"
    argv = ["compile", str(path), "-o", str(out), "--family", "tensor", "--json"]
    assert main([*argv, "--layers", "2"]) == 0
    assert len(json.loads(capsys.readouterr().out)["conditions"]) == 5
    out.unlink()
    assert main([*argv, "--layers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs 2 layers" in err and "--layers" in err
    assert not out.exists()
    assert main([*argv, "--layers", "2", "--shape", "2x4x64"]) == 2  # a budget sets layers
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--layers applies to the one-hot compiler" in err


HEADS = """
format: craft-spec/1
name: gated-heads
vocab: {S: [a, b, c, d], F: [f], Q: ["?"]}
max_len: 12
start: {S: 1}
rules:
  - name: g1
    trigram: {after: [f, S], next: {a: 0.5, b: 0.5}}
  - name: g2
    skip_bigram: {anchor: f, cue: [S, "?"], window: [2, 4], next: {c: 0.5, d: 0.5}}
  - name: ind
    induction: {on: S}
  - name: cp
    copy: {cue: "?", offset: 2}
  - bigram:
      "*": {S: 0.6, F: 0.2, Q: 0.2}
"""


def test_induction_and_copy_heads_gated_exactly():
    """Induction gated by a trigram and a counting skip-bigram that fire together, copy
    gated by that skip-bigram firing outside its cue too: the heads' second factor is the
    product tree's ``[no gate fires]``, so no condition and no refusal."""
    s = specs.parse_spec(HEADS)
    c = compile_spec(s, "tensor")
    assert c.conditions == () and c.model.cfg.n_layers == 4
    heads = {r["name"]: r["layer"] for r in c.model.meta["components"]}
    assert heads["induction:ind"] == heads["copy:cp"] == 3  # after their gate trees
    rng = np.random.default_rng(3)
    tokens = rng.integers(len(s.vocab), size=(2000, 1 + s.max_len))
    tokens[:, 0] = len(s.vocab)
    kl, rules = positions_kl(s, c.model, tokens)
    names = s.rule_names()
    for rid in np.unique(rules):
        assert kl[rules == rid].max() <= c.constants.bound[names[rid]], names[rid]
    assert {"g1", "g2", "ind", "cp"} <= {names[r] for r in np.unique(rules)}
    with pytest.raises(CraftError, match="drop --layers"):
        compile_spec(s, "tensor", layers=2)
