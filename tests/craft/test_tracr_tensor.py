"""``--family tensor``: RASP programs in the polynomial fragment become bilinear models.

Each program in the fragment must agree with ``rasp.evaluate`` on every input up to
max_len 5; programs outside it get a one-line CraftError naming the operation.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch

from craft.tracr import TracrModel, check, from_rasp
from craft.tracr.library import lib_programs
from specs.errors import CraftError

logging.getLogger("absl").setLevel(logging.ERROR)

LIB = {p.name: p for p in lib_programs()}


def _lookup_chain():
    from tracr.rasp import rasp

    first = rasp.categorical(
        rasp.Map(lambda t: {"a": 1, "b": 2, "c": 3}[t], rasp.tokens, simplify=False)
    ).named("rank")
    return rasp.categorical(rasp.Map(lambda r: r % 2 == 0, first, simplify=False)).named("even")


def _shift_written():
    from tracr.rasp import rasp

    select = rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + 1)
    return rasp.categorical(rasp.Aggregate(select, rasp.tokens)).named("prev_token")


def _shift_then_pair():
    """A SequenceMap reading an Aggregate reading a Map: every kind in one program."""
    from tracr.rasp import rasp

    upper = rasp.categorical(rasp.Map(lambda t: t.upper(), rasp.tokens)).named("upper")
    prev = rasp.categorical(
        rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + 1), upper)
    ).named("prev_upper")
    return rasp.categorical(rasp.SequenceMap(lambda a, b: a + b, prev, rasp.tokens)).named("bigram")


FRAGMENT = {
    "nary_sequencemap": (lambda: LIB["nary_sequencemap"].build(5), LIB["nary_sequencemap"].vocab),
    "lib_shift_by": (lambda: LIB["shift_by"].build(5), LIB["shift_by"].vocab),
    "detect_pattern": (lambda: LIB["detect_pattern"].build(5), LIB["detect_pattern"].vocab),
    "shift_written": (_shift_written, frozenset("abcd")),
    "lookup_chain": (_lookup_chain, frozenset("abc")),
    "shift_then_pair": (_shift_then_pair, frozenset("abc")),
}


@pytest.mark.parametrize("name", sorted(FRAGMENT))
def test_fragment_program_agrees_exhaustively_at_max_len_5(name: str) -> None:
    build, vocab = FRAGMENT[name]
    program = build()
    model = from_rasp(program, vocab, 5, family="tensor")
    assert model.model.cfg.family == "tensor" and not model.model.cfg.bias
    assert not model.model.cfg.causal
    result = check(model, program, vocab)
    assert result.exhaustive and result.checked >= 3**5
    assert result.agreement == 1.0, result.summary()


def test_the_network_is_polynomial_and_patterns_are_exact() -> None:
    program = _shift_written()
    model = from_rasp(program, "abcd", 5, family="tensor")
    names = {n for n, _ in model.model.named_modules()}
    assert not any("ln" in n for n in names)
    from craft.models import run_with_cache

    _, cache = run_with_cache(model.model, model.encode([["BOS", "a", "b", "c", "d"]]))
    pattern = cache["blocks.0.attn.hook_pattern"][0, 0]
    expected = torch.zeros(5, 5)
    for t in range(2, 5):
        expected[t, t - 1] = 1.0  # query index t-1 selects key index t-2
    assert torch.equal(pattern, expected)
    assert model.run(["BOS", "a", "b", "c"])[2:] == ["a", "b"]


def test_lookup_chain_uses_two_mlps_and_prunes_unread_directions() -> None:
    program = _lookup_chain()
    even, rank = program.label, program.inner.label
    model = from_rasp(program, "abc", 5, family="tensor")
    assert model.report["operations"] == {rank: "L0.mlp", even: "L1.mlp"}
    pruned = model.report["pruned_directions"]
    assert "tokens:compiler_pad" in pruned and "indices:0" in pruned
    assert [str(d) for d in model.model.layout] == [
        f"{even}:False",
        f"{even}:True",
        f"{rank}:1",
        f"{rank}:2",
        f"{rank}:3",
        "tokens:a",
        "tokens:b",
        "tokens:c",
    ]


def test_save_load_round_trip(tmp_path) -> None:
    program = _shift_then_pair()
    model = from_rasp(program, "abc", 4, family="tensor")
    path = tmp_path / "t.safetensors"
    model.save(path)
    loaded = TracrModel.load(path)
    assert loaded.model.cfg.family == "tensor"
    assert loaded.run(["BOS", "a", "b", "c"]) == model.run(["BOS", "a", "b", "c"])


def _frac_prevs():
    return LIB["frac_prevs"].build(5)


def _length():
    return LIB["length"].build(5)


def _lt_aggregate():
    from tracr.rasp import rasp

    sel = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT)
    return rasp.categorical(rasp.Aggregate(sel, rasp.tokens)).named("lt_agg")


def _token_keys():
    from tracr.rasp import rasp

    sel = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    return rasp.categorical(rasp.Aggregate(sel, rasp.tokens)).named("eq_tokens")


@pytest.mark.parametrize(
    "build, match",
    [
        (_length, r"SelectorWidth 'length_\d+' needs softmax and ReLU"),
        (_frac_prevs, r"numerical Map 'map_\d+' needs ReLU"),
        (_lt_aggregate, r"Aggregate 'lt_agg_\d+' needs softmax \(query value \d selects"),
        (_token_keys, r"Aggregate 'eq_tokens_\d+' needs softmax \(its keys 'tokens' may repeat"),
    ],
)
def test_programs_outside_the_fragment_are_refused_naming_the_operation(build, match) -> None:
    with pytest.raises(CraftError, match=match) as info:
        from_rasp(build(), "helo" if build is _frac_prevs else "abcd", 5, family="tensor")
    assert "\n" not in str(info.value)
    assert "--family standard" in str(info.value)


def test_cli_front_door_converts_with_family_tensor(capsys) -> None:
    from craft.cli import main

    code = main(
        ["tracr", "lib:nary_sequencemap", "--vocab", "1,2,3", "--max-len", "5",
         "--family", "tensor", "--json"]
    )  # fmt: skip
    obj = json.loads(capsys.readouterr().out)
    assert code == 0
    assert obj["family"] == "tensor"
    assert obj["agreement"] == 1.0 and obj["exhaustive"] and obj["checked"] == 363


def test_cli_front_door_refuses_outside_the_fragment(capsys) -> None:
    from craft.cli import main

    code = main(["tracr", "lib:length", "--max-len", "5", "--family", "tensor"])
    err = capsys.readouterr().err
    assert code == 2
    assert "SelectorWidth" in err and "softmax" in err
