"""Defects of the kinds issue 12 found unreachable, built here by editing the weights of
the crafted toy-language model (the spec untouched). Each is found by the model's own
default claim, with a counterexample at which the model's OUTPUT is wrong by the spec's
exact ground truth (checked here, not taken from the claim), and minimal where it is
cheap to know: brute force over every shorter context at which the rule fires."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

import specs
from craft.compiler import compile_spec
from specs.truth import encode
from tests.defects import ALICE_THE, DEFECTS, broken
from verify import batched
from verify.check import check_claim
from verify.defaults import default_claims
from verify.strategies import fired

pytestmark = pytest.mark.usefixtures("one_thread")


@functools.cache
def toy():
    return specs.load_spec(specs.library_path("toy_language"))


def crafted():
    return compile_spec(toy(), "standard").model  # fresh: the tests edit weights


def default(model, name: str):
    """The model's own default claim ``name`` (its crafted bound, its search)."""
    return next(c for c in default_claims(model, toy()) if c.name == name)


def output_kl(model, ctx: list[int]) -> float:
    """KL(spec || model) after ``ctx``, from the exact ground truth."""
    p, _ = batched.truth_at(toy(), [ctx])
    return float(batched.kl(p, batched.model_logprobs(model, toy(), [ctx]))[0])


def wrong_output(model, claim, result) -> list[int]:
    """The counterexample's ids, asserting the output there breaks the claim's bound."""
    assert not result.passed, result
    ctx = list(encode(toy(), result.counterexample))
    assert output_kl(model, ctx) > claim.body.max_kl
    return ctx


def shortest_failing(model, rule: str, max_kl: float, longest: int) -> int | None:
    """Brute force: the length of the shortest context of at most ``longest`` tokens
    where ``rule`` fires and the output breaks ``max_kl`` (None: none)."""
    spec = toy()
    for k in range(longest + 1):
        ctxs = [list(c) for c in itertools.product(range(len(spec.vocab)), repeat=k)]
        ctxs = [c for c in ctxs if fired(spec, c) == rule]
        if ctxs:
            p, _ = batched.truth_at(spec, ctxs)
            if (batched.kl(p, batched.model_logprobs(model, spec, ctxs)) > max_kl).any():
                return k
    return None


def defect(name: str):
    """The crafted model with the defect of ``tests/defects.py`` whose edit is ``name``."""
    return broken(crafted(), next(d for d in DEFECTS if d.edit.__name__ == name))


def test_a_defect_only_at_late_positions():
    """Positions from 100 on lose their positional embedding: the previous-token head
    breaks there only (Hypothesis' and the sweep's contexts used to stop near 47)."""
    model = defect("late_positions")
    claim = default(model, "holds:the-alice")
    r = check_claim(model, toy(), claim, examples=100)
    ctx = wrong_output(model, claim, r)
    assert len(ctx) == 100 and r.counterexample[-2:] == ["the", "alice"]
    assert r.coverage.lengths[1] >= 100


def test_a_passing_claim_covers_every_length_and_says_so():
    """On the correct model the claim passes; its coverage line spans lengths up to
    max_len with contexts in every quarter, and the comparison reads the right way."""
    model = crafted()
    r = check_claim(model, toy(), default(model, "holds:the-alice"), examples=40)
    assert r.passed and r.coverage.lengths[1] == toy().max_len
    assert all(n > 0 for _, _, n in r.coverage.quarters)
    assert dict(r.coverage.rules) == {"the-alice": r.examples}  # distinct, all of the rule
    assert r.comparison().startswith("kl ") and " <= max " in r.comparison()
    assert f"{r.examples} distinct contexts, lengths" in r.coverage.line()


def test_a_defect_just_outside_a_window():
    """The skip-bigram head also sees the anchor 10 back (the window is 2..9): after
    ``beach`` and 9 tokens, ``big`` is a fallback context the model answers with ``at``.
    The minimum needs the anchor 10 back: 11 tokens."""
    model = defect("outside_window")
    claim = default(model, "holds:fallback")
    r = check_claim(model, toy(), claim, examples=100)
    ctx = wrong_output(model, claim, r)
    assert len(ctx) == 11 and r.counterexample[-1] in ("big", "small", "old", "new")
    assert fired(toy(), ctx) == "fallback"


def test_a_same_category_near_miss_of_a_trigram():
    """The ``the alice`` unit also fires after ``a`` (another FUNC token): ``a alice`` is
    a func-noun context (uniform over VERB_I) the model answers with ``runs``. Brute
    force: no context of 0 or 1 tokens where func-noun fires fails, so 2 is minimal."""
    model = defect("trigram_near_miss")
    claim = default(model, "holds:func-noun")
    r = check_claim(model, toy(), claim, examples=100)
    ctx = wrong_output(model, claim, r)
    assert len(ctx) == shortest_failing(model, "func-noun", claim.body.max_kl, 2) == 2
    assert r.counterexample == ["a", "alice"]


def test_a_defect_in_the_start_distribution():
    """After BOS alone the logits of ``alice`` and ``the`` are swapped: only ``start``
    (the empty context) is wrong, and it has a default claim now."""
    assert (toy().vocab.index("alice"), toy().vocab.index("the")) == ALICE_THE
    model = defect("start_swap")
    claim = default(model, "holds:start")
    r = check_claim(model, toy(), claim, examples=20)
    assert wrong_output(model, claim, r) == [] and r.counterexample == []
    fine = check_claim(model, toy(), default(model, "holds:the-alice"), examples=40)
    assert fine.passed  # nothing else moved


def test_a_mechanism_fault_that_changes_outputs_only_on_long_contexts():
    """From position 60 on, the previous-token head splits its attention between the
    previous token and the one before. The role claim fails at a context whose output
    is right; its effect names the shortest context found where the output is wrong,
    which is long, and the trigram claim finds the output fault itself."""
    model = defect("prev_split_long")
    role = check_claim(model, toy(), default(model, "role:prev-token"), examples=40)
    assert not role.passed and role.value < 0.99 and len(role.counterexample) >= 60
    effect = role.effect
    assert effect is not None and effect.wrong_at is not None
    wrong = list(encode(toy(), effect.wrong_at))
    assert len(wrong) >= 60
    assert output_kl(model, wrong) > model.meta["bounds"][fired(toy(), wrong)]
    assert output_kl(model, list(encode(toy(), role.counterexample))) <= effect.max_kl
    claim = default(model, "holds:the-alice")
    r = check_claim(model, toy(), claim, examples=100)
    assert len(wrong_output(model, claim, r)) >= 60
    short = [c for c in specs.contexts_for_rule(toy(), 0, np.random.default_rng(0), 50)]
    assert all(output_kl(model, list(c)) <= claim.body.max_kl for c in short if len(c) < 59)
