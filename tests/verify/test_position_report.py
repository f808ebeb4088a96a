"""verify.positions: where a position-free model derives position, and comparisons."""

from __future__ import annotations

import functools

import specs
from craft.compiler import compile_spec
from craft.compiler.positions import derive_positions
from verify.positions import compare, position_report


@functools.cache
def reports():
    model = compile_spec(specs.load_spec(specs.library_path("induction")), "standard").model
    return position_report(model), position_report(derive_positions(model))


def test_a_derived_model_derives_position_in_layer_zero_with_a_uniform_head():
    _, derived = reports()
    assert derived.derived_in == 0
    assert derived.layers[0] < 0.1 and derived.layers[1] > 0.99  # embedding: no position
    (head,) = derived.first_carriers()
    assert (head.layer, head.head) == (0, 0) and head.uniform > 0.99
    assert [(h.layer, h.head) for h in derived.previous_heads()] == [(1, 0)]
    assert "layer 0" in derived.describe() and "L0H0 (uniform" in derived.describe()


def test_learned_positions_are_in_the_embedding():
    learned, _ = reports()
    assert learned.derived_in == -1 and not learned.first_carriers()
    assert [(h.layer, h.head) for h in learned.previous_heads()] == [(0, 0)]


def test_compare_names_each_difference():
    learned, derived = reports()
    assert compare(derived, derived).same
    diff = compare(derived, learned)
    assert not diff.same
    text = " ".join(diff.reasons)
    assert "layer 0 by the crafted model, -1 by the trained one" in text
    assert "only the crafted model derives it with a uniform head" in text
    assert "previous-token heads in layers [1] (crafted) vs [0] (trained)" in text


def test_default_claims_of_a_position_free_model_ablate_the_position_head():
    from verify.defaults import default_claims

    spec = specs.load_spec(specs.library_path("induction"))
    derived = derive_positions(compile_spec(spec, "standard").model)
    claim = next(c for c in default_claims(derived, spec) if c.name == "ablate:position-share")
    assert claim.body.head == "0.0" and "induction" in claim.body.breaks
