"""Bracket rules (craft.compiler.kinds.bracket) against the spec's exact distribution.

Two specs: the library spec ``toy_language_brackets`` (the toy language with ``( ) [
]``, closed at punctuation) and a hand-written one with three pairs, a non-deterministic
trigram above the bracket rule at its cue (a gate), a deterministic trigram, and a
bigram below it. Standard family: mean KL <= 1e-3 per rule on sampled sequences and max
KL <= the compiled bound on sampled positions, random strings, targeted and near-miss
contexts, nestings of every depth up to ``max_len`` and Hypothesis contexts, wherever the
stated condition (``brackets-match``) holds; the condition is shown to be real, a broken
head misses the bound, the tensor family and the compact compiler refuse in one line,
and a spec past the float32 limit runs in float64 (``--dtype float32`` refused).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch
from exactness import check_bounds, last_kl, positions_kl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import specs
from craft.compiler import compile_spec
from craft.compiler.compact import Shape, compile_compact
from craft.compiler.conditions import condition_mask
from craft.compiler.kinds import kind_of
from craft.compiler.kinds.bracket import BRACKET, FLOAT32_LIMIT
from craft.models.components import ComponentKind
from specs.errors import CraftError
from specs.nearmiss import near_endings

NESTED = """
format: craft-spec/1
name: nested-three
vocab:
  SYM: [a, b, c, d]
  OPEN: ["(", "[", "{"]
  CLOSE: [")", "]", "}"]
  CUE: [".", ";"]
max_len: 40
start: {SYM: 1}
rules:
  - name: a-dot
    trigram: {after: [a, "."], next: {b: 0.5, c: 0.5}}
  - name: b-semi
    trigram: {after: [b, ";"], next: {d: 1}}
  - name: close
    bracket: {pairs: {"(": ")", "[": "]", "{": "}"}, cue: CUE}
  - name: dot-a
    bigram: {".": {a: 1}}
  - name: rest
    bigram: {"*": {SYM: 0.6, OPEN: 0.2, CUE: 0.2}}
"""

SPECS = ["toy_language_brackets", "nested"]
RULE = {"toy_language_brackets": "close-bracket", "nested": "close"}
SAMPLED = {"toy_language_brackets": 200, "nested": 2000}  # toy: 2,000 in the note (craft eval)
RANDOM = {"toy_language_brackets": 120, "nested": 300}


@functools.cache
def spec_of(name: str):
    if name == "nested":
        return specs.parse_spec(NESTED)
    return specs.load_spec(specs.library_path(name))


@functools.cache
def compiled(name: str):
    return compile_spec(spec_of(name), "standard")


def check_positions(name, tokens, mean_bar, model=None):
    """The bounds where the condition holds: the rules checked and positions left out."""
    return check_bounds(spec_of(name), compiled(name), tokens, mean_bar, model)


def check_contexts(name, contexts):
    spec, c = spec_of(name), compiled(name)
    kl, rules = last_kl(spec, c.model, contexts)
    names = spec.rule_names()
    fired = set()
    for i, ctx in enumerate(contexts):
        padded = np.array([[len(spec.vocab), *ctx]])
        if condition_mask(c.conditions, c.analysis, padded)[0, -1]:
            assert kl[i] <= c.constants.bound[names[rules[i]]], (names[rules[i]], ctx, kl[i])
            fired.add(names[rules[i]])
    return fired


def test_bracket_rules_have_a_kind_five_components_and_a_condition():
    spec = spec_of("nested")
    assert kind_of(spec.rules[2]) is BRACKET
    c = compiled("nested")
    assert c.model.cfg.n_layers == 3
    placed = {
        r["kind"]: (r["layer"], r["sublayer"])
        for r in c.model.meta["components"]
        if r["kind"].startswith("bracket")
    }
    assert placed == {
        ComponentKind.BRACKET_COUNT.value: (0, "attn"),
        ComponentKind.BRACKET_DEPTH.value: (0, "mlp"),
        ComponentKind.BRACKET_MIN.value: (1, "attn"),
        ComponentKind.BRACKET_CODE.value: (1, "mlp"),
        ComponentKind.BRACKET.value: (2, "attn"),
    }
    info = c.analysis.info("close")
    assert [g.name for g in c.analysis.gates(info)] == ["a-dot"]
    assert [x.kind for x in c.conditions] == ["brackets-match"]
    assert c.model.meta["float32_limit"] == FLOAT32_LIMIT
    assert c.model.meta["bound_scope"] == "contexts where the conditions hold"


@pytest.mark.parametrize("name", SPECS)
def test_sampled_sequences(name):
    spec = spec_of(name)
    tokens, _ = specs.sample(spec, SAMPLED[name], spec.max_len, seed=0)
    seen, left_out = check_positions(name, tokens, mean_bar=1e-3)
    assert RULE[name] in seen
    assert left_out == 0  # the spec's own sequences meet the condition everywhere


@pytest.mark.parametrize("name", SPECS)
def test_random_strings(name):
    """Uniform strings (crossed and unmatched brackets everywhere): the bound holds
    wherever the condition does, and the condition is real: outside it the model misses."""
    spec, c = spec_of(name), compiled(name)
    rng = np.random.default_rng(1)
    tokens = rng.integers(len(spec.vocab), size=(RANDOM[name], 1 + spec.max_len))
    tokens[:, 0] = len(spec.vocab)
    seen, left_out = check_positions(name, tokens, mean_bar=None)
    assert RULE[name] in seen and left_out > 0
    kl, _ = positions_kl(spec, c.model, tokens)
    outside = ~condition_mask(c.conditions, c.analysis, tokens)
    assert kl[outside].max() > c.constants.bound[RULE[name]]


@pytest.mark.parametrize("name", SPECS)
def test_targeted_contexts(name):
    spec, c = spec_of(name), compiled(name)
    rng = np.random.default_rng(2)
    contexts = [
        list(ctx)
        for i in range(len(spec.rules))
        for ctx in specs.contexts_for_rule(spec, i, rng, 40)
    ]
    fired = check_contexts(name, contexts)
    live = {r.name for r in c.analysis.rules}
    assert live <= fired, live - fired


@pytest.mark.parametrize("name", SPECS)
def test_near_miss_contexts(name):
    spec = spec_of(name)
    rng = np.random.default_rng(4)
    contexts = []
    for rule in spec.rules:
        for _ in range(6):
            for end in near_endings(spec, rule, rng):
                room = spec.max_len - len(end)
                for n in {0, 1, int(rng.integers(0, room + 1))}:
                    if n <= room:
                        contexts.append([*rng.integers(len(spec.vocab), size=n).tolist(), *end])
    assert RULE[name] in check_contexts(name, contexts)


def _nest(spec, rule, depths, rng) -> list[list[int]]:
    """A nesting of each depth (random opener types), then a cue; half of them open and
    close a few extra brackets first (matched, so the condition holds)."""
    pairs, cue = list(rule.pairs), sorted(rule.cue)
    out = []
    for depth in depths:
        opened = [pairs[i] for i in rng.integers(len(pairs), size=depth)]
        ctx = [o for o, _ in opened]
        if depth % 2 and depth + 3 <= spec.max_len:
            o, cl = pairs[int(rng.integers(len(pairs)))]
            ctx = [o, cl, *ctx]  # "( )" first: a pop back to depth 0
        out.append([*ctx, cue[int(rng.integers(len(cue)))]][-spec.max_len :])
    return out


@pytest.mark.parametrize("name", SPECS)
def test_every_nesting_depth_up_to_max_len(name):
    """Depth 1..max_len - 1 (a cue takes the last place): each closes the innermost."""
    spec = spec_of(name)
    rule = spec.rules[spec.rule_names().index(RULE[name])]
    contexts = _nest(spec, rule, range(1, spec.max_len), np.random.default_rng(5))
    assert check_contexts(name, contexts) == {RULE[name]}


@settings(
    max_examples=80, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data())
def test_hypothesis_bracket_walks(data):
    """Random walks of pushes, matching pops, pops on an empty stack and fillers, up to
    depth 12, ending at a cue."""
    spec = spec_of("nested")
    rule = spec.rules[2]
    closers = sorted(rule.closers)
    steps = data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=spec.max_len - 1))
    ctx, stack = [], []
    for step in steps:
        if step <= 2 and len(stack) < 12:
            o, cl = rule.pairs[step]
            ctx.append(o)
            stack.append(cl)
        elif step == 3:
            ctx.append(stack.pop() if stack else closers[data.draw(st.integers(0, 2))])
        else:
            ctx.append(data.draw(st.sampled_from([0, 1, 2, 3])))  # a, b, c, d
    ctx.append(data.draw(st.sampled_from(sorted(rule.cue))))
    assert check_contexts("nested", [ctx])  # the walk meets the condition: checked


@settings(
    max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data())
def test_hypothesis_contexts(data):
    spec = spec_of("nested")
    v = len(spec.vocab)
    ctx = data.draw(st.lists(st.integers(0, v - 1), min_size=1, max_size=spec.max_len))
    check_contexts("nested", [ctx])


@pytest.mark.parametrize("name", SPECS)
def test_bounds_are_useful(name):
    bounds = compiled(name).constants.bound
    assert set(bounds) >= set(spec_of(name).rule_names())
    assert bounds[RULE[name]] <= 1e-6


def test_a_head_that_misses_the_depth_misses_the_bound():
    """Point the depth match one level down: the tests have teeth."""
    spec = spec_of("nested")
    c = compile_spec(spec, "standard")
    rec = next(r for r in c.model.meta["components"] if r["kind"] == ComponentKind.BRACKET.value)
    with torch.no_grad():
        w_k = c.model.blocks[rec["layer"]].attn.W_K[rec["head"]]
        w_k[:, : spec.max_len] = w_k[:, : spec.max_len].roll(1, dims=1)
    contexts = _nest(spec, spec.rules[2], range(2, 9), np.random.default_rng(6))
    kl, _ = last_kl(spec, c.model, contexts)
    assert kl.max() > c.constants.bound["close"]


def test_the_tensor_family_and_the_compact_compiler_refuse_in_one_line():
    spec = spec_of("nested")
    with pytest.raises(CraftError) as err:
        compile_spec(spec, "tensor")
    assert "\n" not in str(err.value) and "cannot build bracket rule close" in str(err.value)
    with pytest.raises(CraftError) as err:
        compile_compact(spec, Shape.parse("3x4x64"))
    assert "\n" not in str(err.value) and "cannot build close" in str(err.value)


def test_past_the_float32_limit_the_model_runs_in_float64():
    long = dataclasses.replace(spec_of("nested"), max_len=FLOAT32_LIMIT + 1)
    assert compile_spec(dataclasses.replace(long, max_len=FLOAT32_LIMIT)).constants.dtype == (
        "float32"
    )
    c = compile_spec(long)
    assert c.constants.dtype == "float64" and c.model.meta["dtype"] == "float64"
    with pytest.raises(CraftError) as err:
        compile_spec(long, dtype="float32")
    msg = str(err.value)
    assert "\n" not in msg and f"up to max_len {FLOAT32_LIMIT}" in msg
    at_limit = compile_spec(dataclasses.replace(long, max_len=FLOAT32_LIMIT))
    short = at_limit.analysis.spec
    deep = _nest(
        short, short.rules[2], range(FLOAT32_LIMIT - 5, FLOAT32_LIMIT), np.random.default_rng(9)
    )
    kl, _ = last_kl(short, at_limit.model, deep)  # float32, at the limit
    assert kl.max() <= at_limit.constants.bound["close"]
    depths = range(FLOAT32_LIMIT - 5, FLOAT32_LIMIT + 1)  # the deepest nestings, in float64
    contexts = _nest(long, long.rules[2], depths, np.random.default_rng(9))
    kl, rules = last_kl(long, c.model, contexts)
    assert set(rules.tolist()) == {2} and kl.max() <= c.constants.bound["close"]


def test_a_position_free_bracket_model_meets_the_bound():
    """``--positions none``: the derived position code feeds the depth MLP's gates and the
    openers' positions; the bound still holds on sampled sequences and at every depth."""
    from craft.compiler.positions import derive_positions

    spec, c = spec_of("nested"), compiled("nested")
    free = derive_positions(c.model)
    assert free.cfg.positions == "none" and free.cfg.n_layers == 4
    tokens, _ = specs.sample(spec, 300, spec.max_len, seed=7)
    seen, _ = check_positions("nested", tokens, mean_bar=1e-3, model=free)
    assert "close" in seen
    contexts = _nest(spec, spec.rules[2], range(1, spec.max_len), np.random.default_rng(8))
    kl, _ = last_kl(spec, free, contexts)
    assert kl.max() <= c.constants.bound["close"]


def test_without_the_minimum_a_closer_on_an_empty_stack_counts():
    """Zeroing the bracket-min head: ``) ( .`` then reads depth 0 and does not fire."""
    spec = spec_of("nested")
    c = compile_spec(spec, "standard")
    rec = next(r for r in c.model.meta["components"] if r["kind"] == "bracket-min")
    ctx = [specs.encode(spec, x.split()) for x in (") ( .", "] ] [ ;", "( ) ) { .")]
    before, _ = last_kl(spec, c.model, [list(x) for x in ctx])
    assert before.max() <= c.constants.bound["close"]
    with torch.no_grad():
        c.model.blocks[rec["layer"]].attn.W_V[rec["head"]].zero_()
    after, _ = last_kl(spec, c.model, [list(x) for x in ctx])
    assert after.min() > 1.0


def test_eval_at_one_context_says_when_the_bound_is_not_claimed(tmp_path, capsys):
    """``craft eval --context``: a crossed bracket is outside the stated condition, and
    the output says so instead of showing a bound that looks broken."""
    import json

    from craft.cli import main
    from craft.models import save_model

    path = tmp_path / "nested.yaml"
    path.write_text(NESTED, encoding="utf-8")
    model = tmp_path / "m.safetensors"
    save_model(compiled("nested").model, model)
    argv = ["eval", str(model), "--spec", str(path), "--context"]
    assert main([*argv, "( [ ) ."]) == 0
    out = capsys.readouterr().out
    assert "not claimed" in out and "condition: close: no closer met" in out
    assert main([*argv, "( [ ] .", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["rule"] == "close" and got["bound_claimed"] is True
    assert got["kl"] <= got["bound"]


ONE_PAIR = """
format: craft-spec/1
name: one-pair
vocab: {S: [a, b], B: ["(", ")"], C: ["."]}
max_len: 24
start: {S: 1}
rules:
  - name: close
    bracket: {pairs: {"(": ")"}, cue: "."}
  - bigram: {"*": {S: 0.4, B: 0.4, C: 0.2}}
"""


def test_one_pair_states_no_condition_and_is_exact_everywhere():
    """With one pair a closer either closes the top or meets an empty stack (handled by
    the minimum): no condition, and the bound holds on every random string."""
    s = specs.parse_spec(ONE_PAIR)
    c = compile_spec(s, "standard")
    assert c.conditions == () and c.model.meta["bound_scope"] == "every context"
    rng = np.random.default_rng(11)
    tokens = rng.integers(len(s.vocab), size=(500, 1 + s.max_len))
    tokens[:, 0] = len(s.vocab)
    kl, rules = positions_kl(s, c.model, tokens)
    fired = rules == 0
    assert fired.sum() > 100 and kl[fired].max() <= c.constants.bound["close"]
    assert kl.max() <= max(c.constants.bound.values())
