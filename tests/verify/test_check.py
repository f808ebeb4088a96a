"""`craft check`: default claims pass on crafted models; planted defects are found,
each with a minimal counterexample; claims files get one-line errors."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from hypothesis import given, settings

import specs
from craft.cli import main
from craft.compiler import compile_spec
from craft.models import component_records, save_model
from craft.models.layout import Direction
from specs.errors import CraftError
from verify.behaviour import evaluate
from verify.check import check_claim
from verify.claims import Claim, RuleHolds, WindowOnly, parse_claims
from verify.defaults import default_claims
from verify.strategies import fired, window_pairs

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny batches: threads only contend


@functools.cache
def spec_of(name: str):
    return specs.load_spec(specs.library_path(name))


def crafted(name: str = "toy_language", family: str = "standard"):
    return compile_spec(spec_of(name), family).model  # fresh: tests edit weights


def holds(rule: str, max_kl: float = 1e-6) -> Claim:
    return Claim(f"holds:{rule}", RuleHolds(rule=rule, max_kl=max_kl))


def head_index(model, name: str) -> tuple[int, int]:
    comp = next(r for r in component_records(model) if r.name == name)
    return comp.layer, comp.head


@pytest.mark.parametrize("family", ["standard", "tensor"])
@pytest.mark.parametrize("name", ["toy_language", "bigram", "skip_trigram", "induction"])
def test_crafted_models_pass_their_default_claims(name, family):
    model, spec = crafted(name, family), spec_of(name)
    claims = default_claims(model, spec)
    assert {c.name for c in claims} >= {f"holds:{r}" for r in spec.rule_names()}  # start too
    for c in claims:
        r = check_claim(model, spec, c, examples=40, seed_=1)
        assert r.passed, r
        assert not r.warnings, r.warnings  # no spurious warning (start: one context)


def test_a_crafted_bracket_model_passes_its_default_claims():
    """The bracket rule's claims (the toy language's own are checked above): it holds,
    and ablating its counting head or its lookup head breaks it."""
    model, spec = crafted("toy_language_brackets"), spec_of("toy_language_brackets")
    claims = [c for c in default_claims(model, spec) if "bracket" in c.name]
    assert [c.name for c in claims] == [
        "holds:close-bracket",
        "ablate:bracket-count:close-bracket",
        "ablate:bracket:close-bracket",
    ]  # no ablate:bracket-min (its verify kind marks it off_support)
    for c in claims:
        r = check_claim(model, spec, c, examples=40, seed_=1)
        assert r.passed, r
        assert not r.warnings, r.warnings


def test_planted_wrong_type_closer_at_depth_three_is_found_minimal():
    """From depth 3 on, the bracket head matches the opener one level below the top: it
    closes the wrong type exactly when the two innermost openers differ."""
    model, spec = crafted("toy_language_brackets"), spec_of("toy_language_brackets")
    layer, h = head_index(model, "bracket:close-bracket")
    attn, lay = model.blocks[layer].attn, model.layout
    with torch.no_grad():
        for k in range(3, spec.max_len + 1):  # query depth k now reads key depth k - 1
            j = int(attn.W_Q[h][lay.index(Direction("bd[close-bracket]", k))].abs().argmax())
            attn.W_K[h][:, j] = 0
            attn.W_K[h][lay.index(Direction("bd[close-bracket]", k - 1)), j] = 1
    r = check_claim(model, spec, holds("close-bracket"), examples=400)
    assert not r.passed
    *openers, cue = r.counterexample
    assert len(openers) == 3 and set(openers) <= {"(", "["} and cue in {".", ","}
    assert openers[1] != openers[2]  # the two innermost differ: the wrong type closes


def test_planted_copy_from_two_back_is_found_minimal():
    """The copy head of previous_token reads ``t - 2`` instead of ``t - 1`` (nothing at
    ``t = 2``): the minimal counterexample is one symbol and the cue."""
    model, spec = crafted("previous_token"), spec_of("previous_token")
    layer, h = head_index(model, "copy:copy-previous")
    attn, lay = model.blocks[layer].attn, model.layout
    with torch.no_grad():
        for t in range(2, spec.max_len + 1):  # query pos:t now meets key pos:t-2
            j = int(attn.W_Q[h][lay.index(Direction("pos", t))].abs().argmax())
            attn.W_K[h][:, j] = 0
            if t >= 3:
                attn.W_K[h][lay.index(Direction("pos", t - 2)), j] = 1
    r = check_claim(model, spec, holds("copy-previous"), examples=400)
    assert not r.passed
    assert len(r.counterexample) == 2 and r.counterexample[-1] == "?"


def test_planted_short_window_is_found():
    """The skip-bigram head's window ends one token early: (beach ... big) at distance 9."""
    model, spec = crafted(), spec_of("toy_language")
    layer, h = head_index(model, "skip0")
    attn, lay = model.blocks[layer].attn, model.layout
    with torch.no_grad():
        for t in range(10, spec.max_len + 1):  # query pos:t no longer sees key pos:t-9
            j = int(attn.W_Q[h][lay.index(Direction("pos", t))].abs().argmax())
            attn.W_K[h][lay.index(Direction("pos", t - 9)), j] = 0
    r = check_claim(model, spec, holds("beach-big"), examples=400)
    assert not r.passed
    assert r.counterexample[0] == "beach" and r.counterexample[-1] == "big"
    assert len(r.counterexample) == 10  # anchor exactly 9 back, no prefix: minimal


def test_planted_wrong_neighbour_induction_is_found():
    """The induction head matches the token itself instead of the one before: it copies
    the earlier occurrence, not what followed it."""
    model, spec = crafted(), spec_of("toy_language")
    layer, h = head_index(model, "induction:noun-induction")
    attn, lay = model.blocks[layer].attn, model.layout
    with torch.no_grad():
        for tok in spec.vocab.tokens:
            prev, cur = lay.index(Direction("prev", tok)), lay.index(Direction("tok", tok))
            attn.W_K[h][cur] = attn.W_K[h][prev]
            attn.W_K[h][prev] = 0
    r = check_claim(model, spec, holds("noun-induction"), examples=400)
    assert not r.passed
    assert len(r.counterexample) == 3 and r.counterexample[0] == r.counterexample[2]


def test_planted_missing_bigram_row_is_found():
    model, spec = crafted(), spec_of("toy_language")
    with torch.no_grad():
        model.unembed.W_U[model.layout.index(Direction("tok", "alice"))] = 0
    r = check_claim(model, spec, holds("noun-bigrams", 1e-3), examples=400)
    assert not r.passed and r.counterexample == ["alice"]


def test_planted_rare_context_defect_is_found_but_not_by_sampling():
    """Wrong only after `alice alice`, which the spec never generates: sampled data looks
    perfect, the property search finds it."""
    model, spec = crafted(), spec_of("toy_language")
    lay, mlp = model.layout, model.blocks[0].mlp
    with torch.no_grad():  # add one ReLU unit: [prev = alice][x = alice] -> fire:the-alice
        w_in = torch.zeros(mlp.W_in.shape[0], 1)
        w_in[lay.index(Direction("prev", "alice"))] = 1
        w_in[lay.index(Direction("tok", "alice"))] = 1
        w_in[lay.index(Direction("one"))] = -1
        w_out = torch.zeros(1, mlp.W_out.shape[1])
        w_out[0, lay.index(Direction("fire", "the-alice"))] = 1
        mlp.W_in = torch.nn.Parameter(torch.cat([mlp.W_in, w_in], 1))
        mlp.W_out = torch.nn.Parameter(torch.cat([mlp.W_out, w_out], 0))
    sampled = evaluate(model, spec, n_seqs=100, seed=0)
    assert max(s.max_kl for s in sampled.rules.values()) <= 1e-3
    r = check_claim(model, spec, holds("noun-induction"), examples=400)
    assert not r.passed and r.counterexample[-2:] == ["alice", "alice"]


@settings(max_examples=40, deadline=None)
@given(window_pairs(spec_of("toy_language"), "beach-big", 9))
def test_window_pairs_differ_only_outside_the_window(pair):
    """No drawn pair is vacuous: both fire the rule, share the last window + 1 tokens and
    differ before them."""
    ctx, other = pair
    assert len(ctx) == len(other) >= 11
    assert ctx[-10:] == other[-10:] and ctx[:-10] != other[:-10]
    assert fired(spec_of("toy_language"), ctx) == fired(spec_of("toy_language"), other)
    assert fired(spec_of("toy_language"), ctx) == "beach-big"


def test_window_claims_hold_or_are_refuted_minimally():
    """The crafted skip-bigram reads nothing beyond its window; induction copies from any
    distance, so an induction window of 3 is false, shown by a 5-token context."""
    model, spec = crafted(), spec_of("toy_language")
    window = Claim("window:beach-big", WindowOnly(rule="beach-big", window=9, max_kl=1e-6))
    ok = check_claim(model, spec, window, examples=200)
    assert ok.passed and ok.examples >= 100 and ok.value <= 1e-6
    narrow = Claim("window:induction", WindowOnly(rule="noun-induction", window=3))
    r = check_claim(model, spec, narrow, examples=200)
    assert not r.passed and len(r.counterexample) == 5  # one far token and the 4 near
    assert r.counterexample[-1] in r.counterexample[:-1] and r.value > 1


def test_replay_database_rechecks_the_counterexample_first(tmp_path):
    model, spec = crafted(), spec_of("toy_language")
    with torch.no_grad():
        model.unembed.W_U[model.layout.index(Direction("tok", "bob"))] = 0
    first = check_claim(model, spec, holds("noun-bigrams", 1e-3), examples=400, database=tmp_path)
    again = check_claim(model, spec, holds("noun-bigrams", 1e-3), examples=400, database=tmp_path)
    assert not first.passed and again.counterexample == first.counterexample
    assert first.found_after > 1 and again.found_after == 1  # replayed before generating
    fresh = check_claim(model, spec, holds("noun-bigrams", 1e-3), examples=400)
    assert fresh.found_after > 1  # without the database the search starts over


def test_trivially_satisfiable_claim_warns():
    """A claim whose expected answer never varied over its contexts, although the rule's
    answer can vary, would also pass for a model that always says that answer: the check
    says so. A rule with one possible answer (one bigram row, or rows all alike, or
    start) is constant by definition: no warning; nor where answers did vary."""
    from verify.check import _Probe, _trivial

    spec = specs.parse_spec(
        {
            "format": "craft-spec/1",
            "name": "const",
            "vocab": {"A": ["x", "y"], "B": ["z"]},
            "max_len": 8,
            "start": {"A": 1},
            "rules": [
                {"name": "z-x", "bigram": {"z": {"x": 1}}},
                {"name": "rest", "bigram": {"x": {"y": 1}, "y": {"z": 1}}},
            ],
        }
    )
    model = compile_spec(spec).model
    constant = check_claim(model, spec, holds("z-x", 1e-3), examples=40)
    assert constant.passed and not constant.warnings
    start = check_claim(model, spec, holds("start", 1e-3), examples=10)
    assert start.passed and not start.warnings
    varied = check_claim(model, spec, holds("rest", 1e-3), examples=40)
    assert varied.passed and not varied.warnings
    one = _Probe(None, None, 0.0, answers={b"one answer"})
    (warning,) = _trivial(holds("rest", 1e-3), one, spec)
    assert "always says" in warning
    assert _trivial(holds("z-x", 1e-3), one, spec) == ()


def test_claims_file_errors_are_one_line(tmp_path, capsys):
    bad = [
        ("format: nope\nclaims: []", "format"),
        ("format: craft-claims/1\nclaims: [{name: a, teleport: {}}]", "claims[0]"),
        ("format: craft-claims/1\nclaims: [{rule_holds: {rule: x, max_kl: -1}}]", "max_kl"),
        ("format: craft-claims/1\nclaims: [{head_role: {head: one, role: induction}}]", "head"),
        (
            "format: craft-claims/1\nclaims: [{ablation: {head: '1.0', breaks: [x], method: max}}]",
            "ablation.method",
        ),
    ]
    for text, where in bad:
        with pytest.raises(CraftError) as e:
            parse_claims(text, "c.yaml")
        assert where in str(e.value) and "\n" not in str(e.value)
    path = tmp_path / "c.yaml"
    path.write_text(bad[1][0])
    model = tmp_path / "m.safetensors"
    save_model(crafted("bigram"), model)
    spec = str(specs.library_path("bigram"))
    assert main(["check", str(model), "--spec", spec, "--claims", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("craft: error:")


def test_check_cli_json(tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    save_model(crafted("skip_trigram"), model)
    spec = str(specs.library_path("skip_trigram"))
    argv = ["check", str(model), "--spec", spec, "--json", "--examples", "40", "--no-replay"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["claims"] and all(c["passed"] for c in out["claims"])
    assert set(out["claims"][0]) >= {
        "name",
        "passed",
        "counterexample",
        "value",
        "threshold",
        "examples",
    }


def test_mean_ablation_of_the_induction_head(tmp_path, capsys):
    """Mean-ablating the crafted induction head (its per-position mean over sampled
    sequences replaces its output) breaks noun-induction, as zeroing it does. Unlike
    zeroing, the mean still writes the head's average copy signal where induction does
    not fire: "breaks nothing else" holds within 0.1 nats but not within 1e-3, and the
    failure is a minimal context whose extra loss a direct computation confirms."""
    from specs.sample import sample
    from specs.truth import encode
    from verify import batched
    from verify.claims import MEAN_SEQUENCES

    model, spec = crafted(), spec_of("toy_language")
    layer, h = head_index(model, "induction:noun-induction")
    text = f"""
format: craft-claims/1
claims:
  - name: mean
    ablation: {{head: "{layer}.{h}", breaks: [noun-induction], method: mean, max_other: 0.1}}
  - name: mean-strict
    ablation: {{head: "{layer}.{h}", breaks: [noun-induction], method: mean}}
  - name: zero-strict
    ablation: {{head: "{layer}.{h}", breaks: [noun-induction]}}
"""
    loose, strict, zero = (check_claim(model, spec, c, examples=40) for c in parse_claims(text))
    assert loose.passed and loose.value >= 1.0  # mean rise of noun-induction's excess loss
    assert zero.passed and zero.value >= 1.0
    assert not strict.passed and strict.value > 1e-3
    ctx = list(encode(spec, strict.counterexample))
    assert fired(spec, ctx) != "noun-induction"
    tokens, _ = sample(spec, MEAN_SEQUENCES, spec.max_len, 0)
    patch = batched.mean_head(layer, h, batched.head_mean(model, tokens, layer, h))
    p, _ = batched.truth_at(spec, [ctx])
    extra = batched.kl(p, batched.model_logprobs(model, spec, [ctx], patch)) - batched.kl(
        p, batched.model_logprobs(model, spec, [ctx])
    )
    assert extra[0] == pytest.approx(strict.value, rel=1e-6)
    # craft check --json: the same keys for a mean ablation as for any claim
    path, model_path = tmp_path / "c.yaml", tmp_path / "m.safetensors"
    path.write_text(text.split("  - name: mean-strict")[0])
    save_model(model, model_path)
    spec_path = str(specs.library_path("toy_language"))
    argv = ["check", str(model_path), "--spec", spec_path, "--claims", str(path), "--json"]
    assert main([*argv, "--examples", "40", "--no-replay"]) == 0
    (out,) = json.loads(capsys.readouterr().out)["claims"]
    assert out["passed"] and set(out) == set(zero.to_json())


def test_patching_both_directions():
    """The induction head carries the copied token (patching it moves the prediction, both
    ways); the previous-token head alone does not."""
    model, spec = crafted(), spec_of("toy_language")
    claims = parse_claims(
        """
format: craft-claims/1
claims:
  - {name: carries, patching: {head: "1.0", rule: noun-induction, category: VERB_T}}
  - {name: not-prev, patching: {head: "0.0", rule: noun-induction, category: VERB_T}}
"""
    )
    carries, prev = (check_claim(model, spec, c, examples=40, sweep=40) for c in claims)
    assert carries.passed and carries.examples > 20
    assert not prev.passed and prev.counterexample


def test_crafted_claims_loosened_for_a_trained_model():
    """--tolerance/--fraction turn the crafted bounds into statistical claims: a model off
    by a little passes them, while the exact crafted claim fails it."""
    from verify.defaults import for_trained

    model, spec = crafted(), spec_of("toy_language")
    with torch.no_grad():  # nudge one bigram row: a small, real error
        model.unembed.W_U[model.layout.index(Direction("tok", "alice"))] *= 0.9
    exact = holds("noun-bigrams", 1e-6)
    assert not check_claim(model, spec, exact, examples=200).passed
    (loose,) = for_trained((exact,), tolerance=0.05, fraction=0.9)
    r = check_claim(model, spec, loose, examples=400)
    assert r.passed and loose.fraction == 0.9 and loose.body.max_kl == 0.05
