"""verify reads component records: a model saved with legacy component dicts diffs and
gets default claims exactly like its recompiled self; the compact compiler's head kinds
(trigram-head, readout-head) get ablation claims and are matched by attention pattern."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from craft.compiler import compile_spec
from craft.models import ComponentKind, component_records, load_model, save_model
from craft.models.components import LEGACY_KINDS
from craft.report import model_summary
from specs import library_path, load_spec
from specs.sample import sample
from verify.check import check_claim
from verify.claims import Ablation, HeadRole
from verify.defaults import default_claims
from verify.diff import as_runner, diff
from verify.matching import match_all

pytestmark = pytest.mark.usefixtures("one_thread")

OLD_NAME = {kind: old for old, kind in LEGACY_KINDS.items()}
NEW_HEAD_KINDS = [ComponentKind.TRIGRAM_HEAD, ComponentKind.READOUT_HEAD]


def crafted(name: str):
    spec = load_spec(library_path(name))
    return compile_spec(spec, "standard").model, spec


def legacy(model, tmp_path):
    """``model`` saved with the component dicts the compiler wrote before records, loaded."""
    old = copy.deepcopy(model)
    old.meta["components"] = [
        {"name": r.name, "kind": OLD_NAME[r.kind], "layer": r.layer, "sublayer": r.sublayer}
        | {"rules": list(r.rules)}
        | ({"head": r.head} if r.head is not None else {})
        for r in component_records(model)
    ]
    save_model(old, tmp_path / "legacy.safetensors")
    return load_model(tmp_path / "legacy.safetensors")


def without_directions(obj):
    """A diff's JSON with every component record's reads and writes left out."""
    if isinstance(obj, dict):
        return {k: without_directions(v) for k, v in obj.items() if k not in ("reads", "writes")}
    if isinstance(obj, list):
        return [without_directions(v) for v in obj]
    return obj


def test_legacy_model_diffs_and_defaults_identically(tmp_path):
    model, spec = crafted("induction")
    old = legacy(model, tmp_path)
    assert "InductionHead" in {c["kind"] for c in old.meta["components"]}
    bare = [dataclasses.replace(r, reads=(), writes=()) for r in component_records(model)]
    assert list(component_records(old)) == bare
    assert default_claims(old, spec) == default_claims(model, spec)
    trained = copy.deepcopy(model)
    trained.meta = {}
    new_diff, old_diff = (diff(m, trained, spec, n_seqs=16).to_json() for m in (model, old))
    assert new_diff["components"][0]["match"]["component"]["kind"] == "previous-token"
    assert without_directions(old_diff) == without_directions(new_diff)
    kinds = [c["kind"] for c in model_summary(old)["components"]]
    assert kinds == [r.kind.value for r in component_records(model)]


def relabelled(model, kind: ComponentKind):
    """A copy whose skip-bigram detector head is recorded as ``kind``."""
    out = copy.deepcopy(model)
    recs = [
        dataclasses.replace(r, kind=kind) if r.kind == ComponentKind.SKIP_DETECTOR else r
        for r in component_records(model)
    ]
    out.meta["components"] = [r.to_json() for r in recs]
    return out, next(r for r in recs if r.kind == kind)


@pytest.mark.parametrize("kind", NEW_HEAD_KINDS)
def test_new_head_kinds_get_an_ablation_claim(kind):
    model, spec = crafted("skip_trigram")
    other, rec = relabelled(model, kind)
    claims = {c.name: c.body for c in default_claims(other, spec)}
    body = claims[f"ablate:{rec.name}"]
    assert isinstance(body, Ablation) and body.head == f"{rec.layer}.{rec.head}"
    assert body.breaks == rec.rules and rec.rules
    head = body.head
    roles = [b for b in claims.values() if isinstance(b, HeadRole) and b.head == head]
    assert roles == []  # no named role: the skip-bigram role claims are gone
    ablate = next(c for c in default_claims(other, spec) if c.name == f"ablate:{rec.name}")
    assert check_claim(other, spec, ablate, examples=10, sweep=0).passed


@pytest.mark.parametrize("kind", NEW_HEAD_KINDS)
def test_new_head_kinds_are_matched_by_pattern(kind):
    model, spec = crafted("skip_trigram")
    other, rec = relabelled(model, kind)
    trained = copy.deepcopy(model)
    trained.meta = {}
    tokens, _ = sample(spec, 32, spec.max_len, 0)
    _, matches = match_all(as_runner(other), as_runner(trained), spec, tokens)
    m = next(m for m in matches if m.component == rec)
    assert m.role == "pattern" and m.crafted_role is None
    assert (rec.layer, rec.head) in m.heads
    best = next(s for s in m.scores if s.head == (rec.layer, rec.head))
    assert best.role == pytest.approx(1.0)
