"""The compact compiler (``--shape``): budgets, fit errors, codes and their collisions.

Exactness of compact models against the spec (sampled, random, targeted, Hypothesis
contexts and the golden table) runs with the other families in
``test_compiler_exact.py`` and ``test_compiler_golden.py``; this file checks what is
particular to compiling under a budget.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch
from exactness import last_kl, positions_kl

import specs
from craft.compiler.analysis import log_probs
from craft.compiler.compact import Shape, compile_compact, prepare, smallest
from craft.models import ComponentKind, Direction, component_records, load_model, save_model
from specs.errors import CraftError
from specs.load import parse_spec
from verify.check import check_all
from verify.defaults import default_claims
from verify.diff import diff
from verify.head_scores import condition_scores

TOY = Shape.parse("2x4x64")


@functools.cache
def spec_of(name: str):
    return specs.load_spec(specs.library_path(name))


@functools.cache
def toy():
    return compile_compact(spec_of("toy_language"), TOY)


@pytest.mark.parametrize(
    ("text", "d_head", "expected"),
    [
        ("2x4x64", None, (2, 4, 64, 16)),
        (" 1 x 2 x 10 ", 3, (1, 2, 10, 3)),
        ("0x1x8", None, (0, 1, 8, 8)),
    ],
)
def test_shape_parses(text, d_head, expected):
    s = Shape.parse(text, d_head)
    assert (s.n_layers, s.n_heads, s.d_model, s.d_head) == expected


@pytest.mark.parametrize("text", ["2x4", "axbxc", "2x0x64", "2x4x0", "", "2x4x64x1"])
def test_bad_shapes_name_the_option_and_the_fix(text):
    with pytest.raises(CraftError, match=r"--shape.*fix: "):
        Shape.parse(text)


@pytest.mark.parametrize(
    ("shape", "needles"),
    [
        ("2x2x64", ["layer 1 needs 3 heads (trigram0, readout:func-noun, induction:"]),
        ("1x4x64", ["needs 2 layers"]),
        ("2x4x40", ["the residual needs 60 dimensions (bos 1, cls 22"]),
        ("2x8x64", ["a head needs 15 dimensions (d_head 8)"]),
    ],
)
def test_a_budget_that_does_not_fit_names_what_and_the_smallest_that_does(shape, needles):
    with pytest.raises(CraftError) as e:
        compile_compact(spec_of("toy_language"), Shape.parse(shape))
    msg = str(e.value)
    assert msg.startswith("--shape: does not fit") and "fix: --shape 2x3x60 --d-head 15" in msg
    for needle in needles:
        assert needle in msg


def test_the_suggested_shape_fits_and_is_the_smallest():
    spec = spec_of("toy_language")
    best, curve = smallest(spec, max_kl=1e-3)
    assert (best.n_layers, best.n_heads, best.d_model, best.d_head) == (2, 3, 60, 15)
    m = compile_compact(spec, best).model
    assert m.n_params() == min(c.params for c in curve if c.fits) < toy().model.n_params()
    assert all(not c.fits for c in curve if c.params < m.n_params())
    with pytest.raises(CraftError, match="--max-kl"):
        smallest(spec, max_kl=1e-9)


def test_toy_language_in_the_trained_shape():
    """The issue's bar: the trained model's shape, attention-only, <= 56,000 parameters,
    and every head a typed record that verify can read."""
    c = toy()
    assert c.model.n_params() <= 56_000 and c.model.cfg.d_mlp == 0
    recs = component_records(c.model)
    kinds = [r.kind for r in recs]
    assert kinds == [
        ComponentKind.PREVIOUS_TOKEN,
        ComponentKind.SKIP_DETECTOR,
        ComponentKind.TRIGRAM_HEAD,
        ComponentKind.READOUT_HEAD,
        ComponentKind.INDUCTION,
    ]
    assert [(r.layer, r.head) for r in recs] == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    by = {r.kind: r for r in recs}
    assert Direction("prevcat") in by[ComponentKind.PREVIOUS_TOKEN].writes
    assert Direction("previdx") in by[ComponentKind.INDUCTION].reads
    assert Direction("read", "func-noun") in by[ComponentKind.READOUT_HEAD].writes


def test_same_spec_from_another_folder_same_bytes(tmp_path, monkeypatch):
    """The header keeps the spec's name, hash and file name, not the path as typed."""
    copy = tmp_path / "sub" / "toy_language.yaml"
    copy.parent.mkdir()
    copy.write_bytes(specs.library_path("toy_language").read_bytes())
    paths = []
    for spec_path, out in [(specs.library_path("toy_language"), "a"), (copy, "b")]:
        save_model(compile_compact(specs.load_spec(spec_path), TOY).model, tmp_path / out)
        paths.append(tmp_path / out)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert load_model(paths[0]).meta["spec"]["source"] == "toy_language.yaml"


def test_saved_compact_model_round_trips(tmp_path):
    c = toy()
    save_model(c.model, tmp_path / "m.safetensors")
    m = load_model(tmp_path / "m.safetensors")
    assert m.meta["codes"]["tok:alice"] == [["cls:alice", 1.0], ["idx:0", 1.0]]
    assert m.meta["bound_scope"] == "every context" and m.meta["interference"]
    x = torch.randint(0, 50, (2, 20))
    x[:, 0] = 50
    with torch.no_grad():
        assert torch.equal(m(x), c.model(x))


def _collide(token: str, like: str):
    """Recode ``token`` with ``like``'s index: one collision the compiler did not plan."""

    def recode(codes):
        vocab = codes.an.spec.vocab
        idx = list(codes.idx_of)
        idx[vocab.index(token)] = idx[vocab.index(like)]
        return dataclasses.replace(codes, idx_of=tuple(idx))

    return recode


@pytest.mark.parametrize("token,like", [("a", "the"), ("office", "beach")])
def test_a_collision_is_refused_by_the_compiler(token, like):
    with pytest.raises(CraftError, match="cannot separate"):
        prepare(spec_of("toy_language"), recode=_collide(token, like))


def test_one_unplanned_collision_breaks_the_bound():
    """The interference bound is tight enough to fail: embed ``a`` with ``the``'s index
    (one extra collision) and ``a alice`` fires the-alice; the exactness check catches it."""
    spec, c = spec_of("toy_language"), toy()
    vocab = spec.vocab
    idx = {d: i for i, d in enumerate(c.model.layout)}
    model = compile_compact(spec, TOY).model
    with torch.no_grad():
        row = model.embed.W_E[vocab.index("a")]
        row[idx[Direction("idx", 1)]], row[idx[Direction("idx", 0)]] = 0.0, 1.0
    ctx = list(specs.encode(spec, ["a", "alice"]))
    kl, rules = last_kl(spec, model, [ctx])
    assert spec.rule_names()[rules[0]] == "func-noun"
    assert kl[0] > 1.0 > c.constants.bound["func-noun"]
    kl_ok, _ = last_kl(spec, c.model, [ctx])
    assert kl_ok[0] <= c.constants.bound["func-noun"]


UNSUPPORTED = """\
format: craft-spec/1
name: two-rows
vocab: {A: [a, b], B: [c, d]}
max_len: 8
start: {A: 1}
rules:
  - name: mixed
    skip_bigram: {anchor: c, cue: A, window: [1, 3], next: {c: 0.5, d: 0.5}}
  - name: rows
    bigram: {a: {A: 1}, b: {B: 1}, "*": {A: 1}}
"""


def test_what_the_construction_cannot_build_is_one_clear_error():
    with pytest.raises(CraftError, match=r"cannot build the non-deterministic skip-bigram mixed"):
        compile_compact(parse_spec(UNSUPPORTED), TOY)
    with pytest.raises(CraftError, match="--family"):
        compile_compact(spec_of("toy_language"), TOY, family="tensor")


def test_tensor_family_under_a_budget_where_two_factors_suffice():
    """Residue positions and category x index identity: exact with two factors; a trigram
    needs three, and is refused naming the rule."""
    spec = spec_of("induction")
    shape, _ = smallest(spec, 1e-3, "tensor")
    c = compile_compact(spec, shape, "tensor")
    assert c.model.cfg.family == "tensor" and c.model.cfg.d_model < 71  # one-hot: 71
    assert [x.kind for x in c.conditions] == ["followers-agree"]
    assert c.model.meta["bound_scope"] == "contexts where the conditions hold"
    # the previous-token pattern is exactly [s = t-1] at every position
    x = torch.full((1, spec.max_len + 1), 3)
    x[0, 0] = len(spec.vocab)
    seen = []
    hook = c.model.blocks[0].attn.hook_pattern.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        c.model(x)
    hook.remove()
    want = torch.diag(torch.ones(spec.max_len), -1)
    torch.testing.assert_close(seen[0][0, 0], want, atol=1e-6, rtol=0)
    with pytest.raises(CraftError, match="cannot build the-alice: its head needs a token"):
        compile_compact(spec_of("toy_language"), TOY, "tensor")


def test_default_claims_hold_on_a_compact_model():
    spec = spec_of("skip_trigram")
    model = compile_compact(spec, prepare(spec).need.smallest()).model
    claims = default_claims(model, spec)
    assert any(c.name.startswith("ablate:trigram") for c in claims)
    results = check_all(model, spec, claims, examples=40, sweep=0)
    assert all(r.passed for r in results), [r.claim.name for r in results if not r.passed]


def test_diff_compares_every_compact_component():
    """Same shape as the trained model: no component is left out of the diff."""
    trained = load_model("examples/diff_toy_language/trained_standard.safetensors")
    d = diff(toy().model, trained, spec_of("toy_language"), n_seqs=16)
    assert d.not_compared == ()
    assert len(d.components) == 5
    assert {x.match.component.kind for x in d.components} == set(ComponentKind) - {
        ComponentKind.TRIGRAM_AND,
        ComponentKind.READOUT,
        ComponentKind.COPY,  # no copy rule in the toy language
        ComponentKind.POSITION_SHARE,  # position-free models only
        ComponentKind.POSITION_CODE,
        ComponentKind.BRACKET_COUNT,  # bracket rules: no compact construction (refused)
        ComponentKind.BRACKET_DEPTH,
        ComponentKind.BRACKET_MIN,
        ComponentKind.BRACKET_CODE,
        ComponentKind.BRACKET,
        ComponentKind.PRODUCT,  # tensor family's exact readouts
    }


def test_direct_path_is_the_bigram_table_exactly():
    """W_E W_U (after a per-row constant) equals every token's direct-path log-probs."""
    c = toy()
    an = c.analysis
    logits = (c.model.embed.W_E @ c.model.unembed.W_U).detach().double().numpy()
    want = np.stack([log_probs(d, c.constants.gap) for d in an.direct])
    np.testing.assert_allclose(logits, want, atol=1e-5)


def test_the_float32_limit_is_stated_and_enforced():
    """Quadratic position scores cancel large terms: their float32 rounding is part of the
    margin (reported), and a max_len where it outgrows the margin is refused."""
    k = toy().constants
    assert 0 < k.fp32_score_error < k.softmax_margin / 4
    assert ("float32 score rounding", k.fp32_score_error) in k.table()
    text = specs.library_path("toy_language").read_text().replace("max_len: 128", "max_len: 512")
    with pytest.raises(
        CraftError, match="float32 cannot resolve the position scores at max_len 512"
    ):
        prepare(parse_spec(text))


def test_a_larger_budget_leaves_the_rest_zero_and_stays_exact():
    spec = spec_of("toy_language")
    m = compile_compact(spec, Shape.parse("3x5x96", 24)).model
    assert (m.cfg.n_layers, m.cfg.n_heads, m.cfg.d_model, m.cfg.d_head) == (3, 5, 96, 24)
    assert not any(p.abs().sum() for n, p in m.named_parameters() if n.startswith("blocks.2."))
    tokens, _ = specs.sample(spec, 40, spec.max_len, seed=5)
    kl, rules = positions_kl(spec, m, tokens)
    bounds = toy().constants.bound
    names = spec.rule_names()
    assert all(kl[i, j] <= bounds[names[rules[i, j]]] for i, j in np.ndindex(kl.shape))


def test_condition_role_singles_out_trigram_and_readout_heads():
    """The named role of the new head kinds: attention that switches with the rule."""
    spec, m = spec_of("toy_language"), toy().model
    tri = condition_scores(m, spec, ["the-alice", "in-park", "at-store"])
    assert tri[1, 0] > 0.99  # trigram0 (L1H0)
    assert tri[0, 0] < 0.01 and tri[1, 2] < 0.05  # previous-token and induction heads
    read = condition_scores(m, spec, ["func-noun"])
    assert read[1, 1] > 0.99 and read[0].max() < 0.01  # readout:func-noun (L1H1)
