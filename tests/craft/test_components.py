"""Typed component records: round trips, every validation check, legacy dicts, and the
records of a compiled model against its plan."""

from __future__ import annotations

import dataclasses
import functools
import json

import pytest

import specs
from craft.compiler import compile_spec
from craft.compiler.plan import reads, writes
from craft.models import ComponentKind, ComponentRecord, component_records
from craft.models.components import LEGACY_KINDS
from craft.models.layout import Direction
from specs.errors import CraftError

MLP_KINDS = {
    ComponentKind.TRIGRAM_AND,
    ComponentKind.READOUT,
    ComponentKind.POSITION_CODE,
    ComponentKind.BRACKET_DEPTH,
    ComponentKind.BRACKET_CODE,
    ComponentKind.PRODUCT,
}


@functools.cache
def toy():
    return compile_spec(specs.load_spec(specs.library_path("toy_language")), "standard")


def record(base: ComponentKind, **changes) -> ComponentRecord:
    """A valid record of kind ``base`` (head 0 for attention), with ``changes`` applied."""
    fields = {
        "name": f"c:{base.value}",
        "kind": base,
        "layer": 1,
        "sublayer": base.sublayer,
        "head": None if base.sublayer == "mlp" else 0,
        "rules": ("r1", "r2"),
        "reads": (Direction("prev"), Direction("fire", "r0")),
        "writes": (Direction("pos", 3), Direction("read", "r1")),
    }
    return ComponentRecord(**(fields | changes))


@pytest.mark.parametrize("kind", list(ComponentKind))
def test_round_trip_of_every_kind(kind):
    rec = record(kind)
    assert rec.sublayer == ("mlp" if kind in MLP_KINDS else "attn")
    obj = json.loads(json.dumps(rec.to_json()))
    assert obj["kind"] == kind.value
    back = ComponentRecord.from_json(obj)
    assert back == rec and back.kind is kind and hash(back) == hash(rec)


A = ComponentKind.INDUCTION
M = ComponentKind.READOUT
# (id, kind of the base record, changes, words the message names)
INVALID = [
    ("unknown-kind", A, {"kind": "InductionHead"}, "unknown kind 'InductionHead'"),
    ("negative-layer", A, {"layer": -1}, "layer -1"),
    ("bool-layer", A, {"layer": True}, "layer True"),
    ("bad-sublayer", A, {"sublayer": "ffn"}, "sublayer 'ffn'"),
    ("attn-without-head", A, {"head": None}, "attention component with head None"),
    ("attn-negative-head", A, {"head": -2}, "attention component with head -2"),
    ("mlp-with-head", M, {"head": 0}, "MLP component with head 0"),
    ("mlp-kind-in-attn", M, {"sublayer": "attn", "head": 0}, "readout component in the attn"),
    ("attn-kind-in-mlp", A, {"sublayer": "mlp", "head": None}, "induction component in the mlp"),
    (
        "head-kind-in-mlp",
        ComponentKind.TRIGRAM_HEAD,
        {"sublayer": "mlp", "head": None},
        "trigram-head component in the mlp",
    ),
]


@pytest.mark.parametrize(
    ("kind", "changes", "words"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_each_check_fires(kind, changes, words):
    with pytest.raises(CraftError) as err:
        record(kind, **changes)
    message = str(err.value)
    assert words in message and f"c:{kind.value}" in message and "fix:" in message


def _good() -> dict:
    return record(ComponentKind.INDUCTION).to_json()


# (id, the JSON object, words the message names)
MALFORMED = [
    ("not-an-object", ["induction"], "is a list"),
    ("unknown-kind", _good() | {"kind": "copier"}, "unknown component kind 'copier'"),
    ("missing-key", {k: v for k, v in _good().items() if k != "reads"}, "missing ['reads']"),
    ("unknown-key", _good() | {"haed": 0}, "unknown keys ['haed']"),
    ("bad-reads", _good() | {"reads": ["prev"]}, "reads is ['prev']"),
    ("bad-rules", _good() | {"rules": "r1"}, "rules is 'r1'"),
    ("empty-name", _good() | {"name": ""}, "name ''"),
    ("bad-layer", _good() | {"layer": "1"}, "layer '1'"),
    ("legacy-extra", {"name": "x", "kind": "Readout", "layer": 0, "gates": []}, "['gates']"),
]


@pytest.mark.parametrize(
    ("obj", "words"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_json_names_the_record_and_the_fix(obj, words):
    with pytest.raises(CraftError) as err:
        ComponentRecord.from_json(obj, where='meta["components"][4]')
    message = str(err.value)
    assert words in message and 'meta["components"][4]' in message and "fix:" in message


@pytest.mark.parametrize(("old", "kind"), list(LEGACY_KINDS.items()))
def test_legacy_dict_loads_to_its_kind(old, kind):
    attn = kind.sublayer == "attn"
    obj = {"name": "x", "kind": old, "layer": 1, "sublayer": kind.sublayer, "rules": ["r"]}
    rec = ComponentRecord.from_json(obj | ({"head": 2} if attn else {}))
    assert rec.kind is kind and rec.sublayer == kind.sublayer
    assert rec.head == (2 if attn else None)
    assert (rec.name, rec.layer, rec.rules, rec.reads, rec.writes) == ("x", 1, ("r",), (), ())


def test_component_records_of_models_without_components():
    class Bare:
        meta: dict = {}

    assert component_records(Bare()) == ()
    Bare.meta = {"components": {"name": "x"}}
    with pytest.raises(CraftError, match="list of component records"):
        component_records(Bare())


def test_compiled_records_match_the_plan():
    c = toy()
    recs = {r.name: r for r in component_records(c.model)}
    assert set(recs) == {comp.name for comp in c.plan.slots}
    for comp, slot in c.plan.slots.items():
        r = recs[comp.name]
        assert (r.kind, r.layer, r.sublayer) == (type(comp).kind, slot // 2, comp.sublayer)
        assert set(r.reads) == reads(comp, c.analysis) and set(r.writes) == writes(comp, c.analysis)
        assert list(r.reads) == sorted(r.reads, key=str) and list(r.writes) == sorted(
            r.writes, key=str
        )
        for d in r.reads + r.writes:  # every direction named is in the residual layout
            assert d in c.model.layout if d.value is not None else c.model.layout.named(d.name)
    by_kind = {r.kind: r for r in recs.values()}
    assert by_kind[ComponentKind.PREVIOUS_TOKEN].writes == (Direction("prev"),)
    assert by_kind[ComponentKind.PREVIOUS_TOKEN].reads == ()
    induction = by_kind[ComponentKind.INDUCTION]
    assert Direction("prev") in induction.reads
    assert induction.writes == (Direction("copy[noun-induction]"),)
    detector = by_kind[ComponentKind.SKIP_DETECTOR]
    assert detector.writes == tuple(sorted(Direction("fire", r) for r in detector.rules))
    assert by_kind[ComponentKind.READOUT].reads == (Direction("fire", "func-noun"),)
    heads = [(r.layer, r.head) for r in recs.values() if r.sublayer == "attn"]
    assert len(heads) == len(set(heads)) and all(h < c.model.cfg.n_heads for _, h in heads)
    assert all(r.head is None for r in recs.values() if r.sublayer == "mlp")


def test_records_are_immutable_and_replace_revalidates():
    rec = record(ComponentKind.PREVIOUS_TOKEN)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.head = 3  # type: ignore[misc]
    assert dataclasses.replace(rec, head=3).head == 3
    with pytest.raises(CraftError):
        dataclasses.replace(rec, head=None)
