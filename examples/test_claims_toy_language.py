"""How a researcher property-tests claims about a model with pytest and Hypothesis.

Run: ``.venv/bin/python -m pytest examples/test_claims_toy_language.py``. The model
here is the crafted toy-language model; point ``MODEL`` at a trained one
(``craft.models.load_model("trained.safetensors")``) to ask which of these claims the
trained model shares. Failures shrink to a minimal context.
"""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings

import specs
from craft.compiler import compile_spec
from verify.assertions import assert_attends, assert_matches_spec
from verify.strategies import contexts, counterfactual_pairs, random_strings, repeated

SPEC = specs.load_spec(specs.library_path("toy_language"))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One context at a time gains nothing from torch's thread pool; on a busy machine
    its threads only wait for each other (about 6x slower here)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@functools.cache
def model():
    return compile_spec(SPEC, "standard").model


@settings(max_examples=50, deadline=None)
@given(contexts(SPEC, rule="noun-induction"))
def test_induction_rule_holds(ctx):
    assert_matches_spec(model(), SPEC, ctx, max_kl=1e-3)


@settings(max_examples=50, deadline=None)
@given(contexts(SPEC, not_rule="noun-induction"))
def test_everything_else_holds_too(ctx):
    assert_matches_spec(model(), SPEC, ctx, max_kl=1e-3)


@settings(max_examples=30, deadline=None)
@given(random_strings(SPEC, min_size=2))
def test_head_0_0_is_a_previous_token_head(ctx):
    assert_attends(model(), SPEC, ctx, head="0.0", positions=[len(ctx) - 1], min_share=0.99)


@settings(max_examples=30, deadline=None)
@given(repeated(SPEC, max_half=12).filter(lambda c: c[-1] in SPEC.vocab.resolve("NOUN")))
def test_head_1_0_attends_after_the_earlier_copy(ctx):
    first = ctx.index(ctx[-1])  # earliest occurrence of the current token
    if specs.next_dist(SPEC, ctx)[1] != specs.rule_index(SPEC, "noun-induction"):
        return  # a higher-priority rule fires here; the head stands down (attends BOS)
    assert_attends(model(), SPEC, ctx, head="1.0", positions=[first + 2], min_share=0.99)


@settings(max_examples=30, deadline=None)
@given(counterfactual_pairs(SPEC, "VERB_I", rule="fallback"))
def test_counterfactual_pairs_change_only_one_category(pair):
    clean, corrupt = pair
    verbs = SPEC.vocab.resolve("VERB_I")
    assert len(clean) == len(corrupt)
    assert all(a == b or (a in verbs and b in verbs) for a, b in zip(clean, corrupt, strict=True))
