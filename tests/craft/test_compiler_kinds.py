"""The compiler's rule kinds (craft.compiler.kinds): one module per kind, one registry.

Checks that the registry finds every kind by spec rule class and by name, that the
generic stages name no rule kind (they call the kinds' hooks), and what the hooks give
for the library specs: readings, implications, components and layout order, tensor
conditions, and the refusal of a kind with no compact construction.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

import specs
from craft.compiler import compile_spec
from craft.compiler.analysis import analyse, implies
from craft.compiler.compact import Shape, compile_compact
from craft.compiler.conditions import counts
from craft.compiler.kinds import kind_named, kind_of, registry
from craft.compiler.kinds.base import Component, RuleKind
from craft.compiler.plan import components
from craft.models.layout import Direction
from specs.errors import CraftError
from specs.model import Bigram, Induction, SkipBigram, Trigram

COMPILER = Path(__file__).resolve().parents[2] / "craft" / "compiler"
GENERIC = sorted(
    p for p in COMPILER.rglob("*.py") if "kinds" not in p.parts and p.name != "positions.py"
)
KIND_BRANCH = re.compile(
    r"""kind\s*(==|!=|in)\s*[("']+(trigram|skip_bigram|induction|bigram)\b"""
    r"|isinstance\([^)]*\b(Bigram|Trigram|SkipBigram|Induction)\b"
)


@functools.cache
def an(name: str):
    return analyse(specs.load_spec(specs.library_path(name)))


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        (Bigram, "bigram"),
        (Trigram, "trigram"),
        (SkipBigram, "skip_bigram"),
        (Induction, "induction"),
    ],
)
def test_registry_finds_each_kind_by_rule_class_and_name(cls, name):
    kind = kind_named(name)
    assert kind.rule is cls and kind.name == name and kind in registry()
    assert isinstance(kind, RuleKind)


def test_every_library_rule_has_a_kind_and_every_info_names_its_kind():
    for spec_name in ("toy_language", "skip_trigram", "induction", "bigram"):
        a = an(spec_name)
        for rule in a.spec.rules:
            assert kind_of(rule).rule is type(rule)
        for r in a.rules:
            assert r.rule_kind is kind_named(r.kind)


def test_an_unknown_rule_class_is_a_one_line_refusal():
    class Strange:
        name = "strange"

    with pytest.raises(CraftError, match="no construction for Strange rules yet .rule 'strange'"):
        kind_of(Strange())


def test_a_tensor_bracket_model_is_refused_in_one_line_through_the_cli(tmp_path, capsys):
    from craft.cli import main

    out = tmp_path / "m.safetensors"
    spec = str(specs.library_path("toy_language_brackets"))
    assert main(["compile", spec, "-o", str(out), "--family", "tensor"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot build bracket rule close-bracket" in err
    assert not out.exists()


@pytest.mark.parametrize("path", GENERIC, ids=lambda p: str(p.relative_to(COMPILER)))
def test_generic_stages_name_no_rule_kind(path):
    """Kind-specific code lives in craft/compiler/kinds/: the stages call hooks."""
    hits = [line for line in path.read_text().splitlines() if KIND_BRANCH.search(line)]
    assert hits == []


def test_the_pattern_catches_a_kind_branch():
    """The check above has teeth."""
    assert KIND_BRANCH.search('        if r.kind == "induction":')
    assert KIND_BRANCH.search("    if isinstance(rule, Bigram):")
    assert not KIND_BRANCH.search('    if c.kind != "followers-agree":')


def test_readings_of_the_toy_language():
    a = an("toy_language")
    the_alice, beach, induction = (a.info(n) for n in ("the-alice", "beach-big", "noun-induction"))
    vocab = a.spec.vocab
    assert the_alice.window == (1, 1) and the_alice.anchor == {vocab.index("the")}
    assert beach.window == (2, 9) and beach.cue == {vocab.index("big")}
    assert induction.anchor is None and induction.next is None and induction.deterministic
    assert the_alice.max_count(a.spec.max_len) == 1 and beach.max_count(a.spec.max_len) == 8
    assert not counts(a, the_alice) and counts(a, beach)


def test_implication_stays_within_a_kind_family():
    a = an("toy_language")
    the_alice, func_noun, induction = (
        a.info(n) for n in ("the-alice", "func-noun", "noun-induction")
    )
    on = the_alice.cue
    assert implies(the_alice, func_noun, on)  # (the, alice) inside (FUNC, NOUN)
    assert not implies(func_noun, the_alice, func_noun.cue)
    assert not implies(the_alice, induction, on) and not implies(induction, the_alice, on)
    assert implies(induction, induction, induction.cue)


def test_components_come_from_the_kinds_in_plan_order():
    comps = components(an("toy_language"))
    assert all(isinstance(c, Component) for c in comps)
    kinds = [c.kind.value for c in comps]
    assert kinds[0] == "previous-token" and kinds[1] == "skip-detector"
    assert kinds[-1] == "readout" and "induction" in kinds and "trigram-and" in kinds
    assert {c.name for c in comps} >= {"prev-token", "skip0", "and:the-alice", "readout:func-noun"}


def test_fire_features_follow_rule_order_whatever_the_component_order():
    """Detectors are planned before the trigram units, but ``fire:*`` is in rule order."""
    c = compile_spec(specs.load_spec(specs.library_path("toy_language")))
    fired = [d.value for d in c.model.layout.named("fire")]
    assert fired == [r.name for r in c.analysis.rules if r.rule_kind.fires]
    names = [str(d) for d in c.model.layout.directions]
    assert names.index("prev:alice") < names.index("fire:the-alice")
    assert names.index("fire:lake-new") < names.index(
        str(Direction("copy[noun-induction]", "alice"))
    )


def test_every_kinds_constants_are_reported():
    """Each kind contributes its construction constants to the report's table."""
    table = dict(compile_spec(specs.load_spec(specs.library_path("bigram"))).constants.table())
    for label in ("prev-token score", "detector score C", "induction match C_m"):
        assert table[label] > 0


def test_a_kind_without_a_compact_construction_is_refused(monkeypatch):
    """A kind whose ``compact_heads`` says None is refused naming its first rule."""
    kind = kind_named("skip_bigram")
    monkeypatch.setattr(type(kind), "compact_heads", lambda self, rules, an: None)
    spec = specs.load_spec(specs.library_path("toy_language"))
    with pytest.raises(CraftError, match="cannot build beach-big yet"):
        compile_compact(spec, Shape.parse("2x4x64"))


def test_the_tensor_conditions_come_from_the_kinds():
    a = an("toy_language")
    said = [
        (c.kind, c.rules)
        for r in a.rules
        for c in r.rule_kind.tensor_conditions(r, a, earliest=False)
    ]
    assert said == [("followers-agree", ("noun-induction",))]
    earliest = [c for r in a.rules for c in r.rule_kind.tensor_conditions(r, a, earliest=True)]
    assert earliest == []
