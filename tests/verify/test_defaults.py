"""Default claims moved to a trained model's heads: a gauge copy with permuted heads
(the same circuit at other indices) and a copy missing its induction head."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from craft.compiler import compile_spec
from craft.models import ComponentKind, component_records
from specs import library_path, load_spec
from verify.check import check_all
from verify.claims import HeadRole, head_of
from verify.defaults import default_claims, retarget
from verify.gauge import apply_gauge


@pytest.fixture(scope="module")
def skip_model():
    spec = load_spec(library_path("skip_trigram"))
    return compile_spec(spec, "standard").model.double(), spec


def permuted(model, seed: int):
    """A gauge copy whose heads are permuted; returns it and ``{old head: new head}``."""
    for s in range(seed, seed + 50):  # a permutation that moves at least one crafted head
        other = apply_gauge(model, np.random.default_rng(s), residual="orthogonal")
        perms = other.meta["gauge"]["head_perm"]
        moved = {(la, old): (la, new) for la, p in enumerate(perms) for new, old in enumerate(p)}
        heads = [(r.layer, r.head) for r in component_records(model) if r.head is not None]
        if any(moved[h] != h for h in heads):
            other.meta = {}
            return other, moved
    raise AssertionError("no permutation moved a head")


def test_head_claims_follow_permuted_heads(skip_model):
    model, spec = skip_model
    other, moved = permuted(model, 0)
    claims = default_claims(model, spec)
    out = retarget(claims, model, other, spec)
    assert len(out) == len(claims)
    changed = 0
    for before, after in zip(claims, out, strict=True):
        if not hasattr(before.body, "head"):
            assert after == before
            continue
        new = moved[head_of(before.body.head)]
        assert head_of(after.body.head) == new
        assert after.name == f"{before.name}@L{new[0]}H{new[1]}"
        changed += new != head_of(before.body.head)
        if isinstance(after.body, HeadRole):
            assert after.body.min_score <= 0.3
    assert changed
    roles = [c for c in out if isinstance(c.body, HeadRole)]
    results = check_all(other, spec, roles, examples=20)
    assert all(r.passed for r in results), [r.name for r in results if not r.passed]
    # without retargeting, the claims name the wrong heads and the role claims fail
    stale = check_all(other, spec, [c for c in claims if "role:" in c.name], examples=20)
    assert not all(r.passed for r in stale)


def test_unmatched_component_keeps_its_head_and_says_so():
    spec = load_spec(library_path("induction"))
    model = compile_spec(spec, "standard").model
    broken = copy.deepcopy(model)
    rec = next(r for r in component_records(model) if r.kind == ComponentKind.INDUCTION)
    with torch.no_grad():
        broken.blocks[rec.layer].attn.W_O[rec.head] = 0
    broken.meta = {}
    out = retarget(default_claims(model, spec), model, broken, spec)
    names = [c.name for c in out]
    assert "role:induction:induction@unmatched" in names
    assert any(n.startswith("role:prev-token@L") for n in names)
