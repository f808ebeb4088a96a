"""craft diff: crafted vs itself, vs an induction-ablated copy, vs a gauge-transformed copy;
patching pairs and figures; composition; the report files; the CLI's --json."""

from __future__ import annotations

import argparse
import copy
import json

import numpy as np
import pytest
import torch

from craft.compiler import compile_spec
from craft.models import ComponentKind, component_records, save_model
from specs import library_path, load_spec
from specs.truth import next_dist
from verify import diff_cli
from verify.diff import diff
from verify.gauge import apply_gauge
from verify.patching import MIN_TV, pairs
from verify.report import write_report
from verify.strategies import fired

N = 40  # sampled sequences: enough for every rule of these specs to fire


pytestmark = pytest.mark.usefixtures("one_thread")


def crafted(name: str, family: str = "standard"):
    spec = load_spec(library_path(name))
    return compile_spec(spec, family).model, spec


def without_induction(model):
    """A copy whose induction head writes nothing (W_O zeroed)."""
    out = copy.deepcopy(model)
    rec = next(r for r in component_records(model) if r.kind == ComponentKind.INDUCTION)
    with torch.no_grad():
        out.blocks[rec.layer].attn.W_O[rec.head] = 0
    out.meta = {}  # a trained model names no components
    return out


CASES = [
    ("induction", "standard"),
    ("induction", "tensor"),
    ("skip_trigram", "standard"),
    ("skip_trigram", "tensor"),
]


@pytest.mark.parametrize(("name", "family"), CASES)
def test_itself_all_found(name, family):
    model, spec = crafted(name, family)
    d = diff(model, model, spec, n_seqs=N)
    assert d.components
    for c in d.components:
        assert c.verdict == "found", c.match.component.name
        assert abs(c.match.similarity - 1) < 1e-6
        assert c.match.heads == ((c.match.component.layer, c.match.component.head),)
        assert c.hurt == c.relied
    assert all(abs(v) < 1e-12 for v in d.agreement.values())
    assert d.direct is None or abs(d.direct - 1) < 1e-6
    json.dumps(d.to_json())  # serialisable


@pytest.mark.parametrize(("name", "family"), CASES)
def test_gauge_copy_all_found(name, family):
    model, spec = crafted(name, family)
    other = apply_gauge(model.double(), np.random.default_rng(3))
    other.meta = {}
    d = diff(model, other, spec, n_seqs=N)
    for c in d.components:
        assert c.verdict == "found", c.match.component.name
        assert abs(c.match.similarity - 1) < 1e-6
    if model.meta.get("float32_limit") is not None:
        # tensor induction's recency weights span 3**max_len (6e14 here): a rotated copy
        # mixes them into every coordinate and rounds the small logits away, even in
        # float64, so only the (gauge-invariant) circuit comparison is exact
        return
    assert all(v < 1e-9 for v in d.agreement.values())


def test_induction_removed_is_missing(tmp_path):
    model, spec = crafted("induction")
    d = diff(model, without_induction(model), spec, n_seqs=N)
    verdicts = {c.match.component.kind: c for c in d.components}
    induction = verdicts[ComponentKind.INDUCTION]
    assert induction.verdict == "missing"
    assert induction.match.heads == ()
    assert induction.crafted.zero["induction"] > 1.0  # ablating the crafted head costs nats
    assert d.trained.rules["induction"].kl > d.crafted.rules["induction"].kl + 1.0
    assert d.agreement["induction"] > 1.0
    # present, but nothing relies on it now
    assert verdicts[ComponentKind.PREVIOUS_TOKEN].verdict == "partly"
    text = write_report(d, tmp_path).read_text()
    assert "| induction:induction | induction | L1H0 | - |" in text
    assert "**missing**" in text
    row = next(line for line in text.splitlines() if line.startswith("| induction | "))
    excess_crafted, excess_trained = (float(x) for x in row.split("|")[5:7])
    assert excess_trained > excess_crafted + 1.0


def test_report_files(tmp_path):
    model, spec = crafted("skip_trigram")
    d = diff(model, model, spec, n_seqs=N)
    path = write_report(d, tmp_path / "report")
    assert path == tmp_path / "report" / "report.md"
    figures = sorted(p.name for p in (tmp_path / "report" / "figures").iterdir())
    assert "direct_path.png" in figures
    assert "skip0_qk_tokens.png" in figures and "skip0_ov.png" in figures
    assert all(
        (tmp_path / "report" / "figures" / p).read_bytes()[:4] == b"\x89PNG" for p in figures
    )
    assert not [p for p in (tmp_path / "report").rglob("*.tmp")]
    text = path.read_text()
    for f in figures:
        assert f"figures/{f}" in text
    assert text.count("**found**") == len(d.components)


def test_cli_json(tmp_path, capsys):
    model, spec = crafted("induction")
    save_model(model, tmp_path / "crafted.safetensors")
    save_model(without_induction(model), tmp_path / "trained.safetensors")
    parser = argparse.ArgumentParser()
    diff_cli.add_parser(parser.add_subparsers())
    argv = [
        "diff",
        str(tmp_path / "crafted.safetensors"),
        str(tmp_path / "trained.safetensors"),
        "--spec",
        str(library_path("induction")),
        "-o",
        str(tmp_path / "out"),
        "--n",
        "30",
        "--json",
    ]
    args = parser.parse_args(argv)
    assert args.run(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"] == {"prev-token": "partly", "induction:induction": "missing"}
    assert out["n_seqs"] == 30
    assert (tmp_path / "out" / "report.md").exists()
    args = parser.parse_args(argv[:-1])
    assert args.run(args) == 0
    text = capsys.readouterr().out
    assert "induction:induction" in text and "missing" in text


@pytest.mark.parametrize("rule", ["the-alice", "beach-big", "noun-induction", "func-noun"])
def test_patching_pairs_swap_one_token_within_its_category(rule):
    spec = load_spec(library_path("toy_language"))
    clean, bad = pairs(spec, rule, n=12, seed=1)
    assert len(clean) >= 6  # a context with no answer-changing swap is dropped
    for a, b in zip(clean, bad, strict=True):
        assert len(a) == len(b) and fired(spec, a) == rule
        (i,) = [k for k in range(len(a)) if a[k] != b[k]]  # exactly one position differs
        names = spec.vocab.tokens
        assert spec.vocab.category_of(names[a[i]]) == spec.vocab.category_of(names[b[i]])
        p, q = next_dist(spec, a)[0], next_dist(spec, b)[0]
        assert 0.5 * np.abs(p - q).sum() >= MIN_TV


@pytest.mark.parametrize("family", ["standard", "tensor"])
def test_patching_and_composition_against_itself(family):
    model, spec = crafted("induction", family)
    d = diff(model, model, spec, n_seqs=N)
    by_kind = {c.match.component.kind: c for c in d.components}
    ind = by_kind[ComponentKind.INDUCTION].patching["induction"]
    for side in ind:  # the induction head carries the whole rule, both ways
        assert side.n >= 16 and side.gap > 1.0
        assert abs(side.carried - 1) < 1e-6 and abs(side.restored - 1) < 1e-6
    prev = by_kind[ComponentKind.PREVIOUS_TOKEN].patching["induction"]
    # a swapped follower reaches the answer through the induction head's values, not
    # through the previous-token head: patching that head carries (almost) nothing
    assert prev[0].carried < 0.1 and prev[0].carried == pytest.approx(prev[1].carried)
    (row,) = d.composition
    assert row.crafted == row.trained  # the same model on both sides
    assert row.crafted.k > 0.1 and row.crafted.q == row.crafted.v == 0.0  # K-composition only
    heads = model.cfg.n_heads
    assert set(d.trained_composition) == {
        ((0, a), (1, b)) for a in range(heads) for b in range(heads)
    }


def test_patching_missing_component_has_no_trained_side():
    model, spec = crafted("induction")
    d = diff(model, without_induction(model), spec, n_seqs=N)
    ind = next(c for c in d.components if c.match.component.kind == ComponentKind.INDUCTION)
    assert ind.patching["induction"][1] is None
    assert ind.patching["induction"][0].carried > 0.99


def test_a_match_set_of_most_heads_is_diffuse_not_found():
    """A match that covers most heads localises nothing: even when ablating it hurts
    every rule the crafted head serves, the verdict is "diffuse"; the same figures for a
    two-head match of eight are "found"."""
    from verify.diff import Ablation, _verdict

    crafted_abl = Ablation(((1, 0),), {"r": 5.0}, {"r": 5.0})
    most = Ablation(tuple((la, h) for la in range(2) for h in range(3)), {"r": 9.0}, {"r": 9.0})
    two = Ablation(((1, 0), (1, 1)), {"r": 9.0}, {"r": 9.0})
    assert _verdict(crafted_abl, most, {}, n_heads=8)[2] == "diffuse"
    assert _verdict(crafted_abl, two, {}, n_heads=8)[2] == "found"
    assert _verdict(crafted_abl, None, {}, n_heads=8)[2] == "missing"
    idle = Ablation(((1, 0),), {"r": 0.0}, {"r": 0.0})  # the crafted head does nothing here
    assert _verdict(idle, two, {}, n_heads=8)[2] == "idle"


def test_a_rule_named_overall_keeps_its_own_figure():
    """Per-rule figures and the overall figure live apart: a spec whose rule is named
    ``overall`` gets that rule's mean excess loss, not the mean over every position."""
    from dataclasses import replace

    from craft.models.layout import Direction
    from specs import parse_spec
    from specs.sample import sample
    from specs.truth import truth
    from verify.batched import kl
    from verify.diff import as_runner, rule_excess

    spec = parse_spec(
        {
            "format": "craft-spec/1",
            "name": "named-overall",
            "vocab": {"A": ["x", "y"], "B": ["z"]},
            "max_len": 8,
            "start": {"A": 1},
            "rules": [
                {"name": "first", "bigram": {"x": {"y": 1}}},
                {"name": "rest", "bigram": {"*": {"x": 0.5, "z": 0.5}}},
            ],
        }
    )
    model = compile_spec(spec).model
    # the loader reserves the name; the records must not depend on that
    spec = replace(spec, rules=(replace(spec.rules[0], name="overall"), *spec.rules[1:]))
    with torch.no_grad():  # a real error on one rule only
        model.unembed.W_U[model.layout.index(Direction("tok", "x"))] = 0
    runner = as_runner(model)
    tokens, _ = sample(spec, 20, spec.max_len, 0)
    got = rule_excess(runner, spec, tokens, {})
    p, ids = truth(spec, tokens)
    with torch.no_grad():
        logq = torch.log_softmax(runner(torch.from_numpy(tokens)).double(), -1).numpy()
    values = kl(p, logq)
    assert got.rules["overall"] == pytest.approx(values[ids == 0].mean(), abs=1e-12)
    assert got.overall == pytest.approx(values.mean(), abs=1e-12)
    assert abs(got.rules["overall"] - got.overall) > 1e-3
