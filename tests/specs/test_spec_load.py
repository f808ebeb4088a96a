"""Loading: exact probabilities, resolution, hashing, the library, shadowing warnings."""

from __future__ import annotations

import dataclasses
import json
import warnings
from fractions import Fraction
from pathlib import Path

import pytest

import specs
from specs import CraftError, CraftWarning, parse_spec, spec_to_data
from specs.canonical import canonical_size
from specs.yamlio import parse_text

MINI = """\
format: craft-spec/1
name: mini
vocab:
  NOUN: [alice, bob]
  VERB: [runs, sees, finds]
  END: ["."]
max_len: 8
start: {alice: 0.7, bob: "0.1", runs: "1/10", sees: 1/20, finds: ".05"}
rules:
  - bigram: {alice: {runs: 1}, NOUN: {VERB: 1}, "*": {NOUN: 0.5, alice: 0.25, ".": 0.25}}
"""


def _mini(**changes: object) -> dict:
    data = parse_text(MINI, "mini.yaml")
    data.update(changes)
    return data


def _start(spec: specs.Spec) -> dict[str, Fraction]:
    return dict(zip(spec.vocab.tokens, spec.start.probs, strict=True))


def test_probabilities_are_exact_fractions() -> None:
    start = _start(parse_spec(_mini(start={"alice": 0.7, "bob": 0.2, "runs": 0.1})))
    assert start["alice"] == Fraction(7, 10)  # a YAML float, not 0.6999999999999999555...
    assert start["bob"] == Fraction(1, 5) and start["runs"] == Fraction(1, 10)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1/3", Fraction(1, 3)),
        (" 2 / 6 ", Fraction(1, 3)),
        ("0.25", Fraction(1, 4)),
        (".25", Fraction(1, 4)),
        ("2.5e-1", Fraction(1, 4)),
        (0.25, Fraction(1, 4)),
        ("1", Fraction(1)),
    ],
)
def test_probability_spellings(value: object, expected: Fraction) -> None:
    spec = parse_spec(_mini(start={"alice": value, "bob": str(1 - expected)}))
    assert _start(spec)["alice"] == expected


def test_yaml_number_spellings_in_text() -> None:
    start = _start(parse_spec(MINI))
    assert start["alice"] == Fraction(7, 10)
    assert start["bob"] == start["runs"] == Fraction(1, 10)
    assert start["sees"] == start["finds"] == Fraction(1, 20)


def test_category_spreads_and_masses_add() -> None:
    spec = parse_spec(_mini(start={"NOUN": "1/2", "alice": "1/4", "VERB": "1/4"}))
    start = _start(spec)
    assert start["alice"] == Fraction(1, 2) and start["bob"] == Fraction(1, 4)
    assert start["runs"] == start["sees"] == start["finds"] == Fraction(1, 12)
    assert start["."] == 0


def test_bigram_precedence_token_over_category_over_star() -> None:
    spec = parse_spec(MINI)
    rule = spec.rules[0]
    tok = spec.vocab.index
    assert rule.row(tok("alice")).probs[tok("runs")] == 1  # token key
    assert rule.row(tok("bob")).probs[tok("finds")] == Fraction(1, 3)  # category key
    star = rule.row(tok(".")).probs  # "*" key: NOUN 1/2 spread, plus alice 1/4
    assert star[tok("alice")] == Fraction(1, 2) and star[tok("bob")] == Fraction(1, 4)
    assert rule.row(tok("runs")) == rule.row(tok("."))
    assert rule.keys == frozenset(range(6))


def test_default_rule_names_and_source() -> None:
    spec = parse_spec(MINI, "here.yaml")
    assert spec.rule_names() == ("bigram-0", "start")
    assert spec.source == "here.yaml" and spec.name == "mini" and spec.max_len == 8


def test_json_text_is_accepted() -> None:
    from_yaml = parse_spec(MINI)
    from_json = parse_spec(json.dumps(parse_text(MINI, "x")))
    assert from_json == from_yaml


def test_load_spec_sets_source(tmp_path: Path) -> None:
    path = tmp_path / "mini.yaml"
    path.write_text(MINI)
    spec = specs.load_spec(path)
    assert spec.source == str(path)
    assert spec == dataclasses.replace(parse_spec(MINI), source=str(path))


def test_sha256_is_of_the_resolved_content() -> None:
    base = parse_spec(MINI, "a.yaml")
    assert len(base.sha256) == 64
    assert parse_spec(MINI, "b.yaml").sha256 == base.sha256  # source excluded
    spelled_out = MINI.replace("NOUN: {VERB: 1}", "bob: {runs: 1/3, sees: 1/3, finds: 1/3}")
    assert parse_spec(spelled_out).sha256 == base.sha256  # same meaning, same hash
    changed = MINI.replace("alice: {runs: 1}", "alice: {runs: 0.5, sees: 0.5}")
    assert parse_spec(changed).sha256 != base.sha256
    renamed = MINI.replace("- bigram:", "- name: table\n    bigram:")
    assert parse_spec(renamed).sha256 != base.sha256


@pytest.mark.parametrize("name", specs.LIBRARY)
def test_canonical_form_round_trips(name: str) -> None:
    spec = specs.load_library(name)
    again = parse_spec(json.loads(specs.canonical_json(spec)), spec.source)
    assert again == spec
    assert spec_to_data(again) == spec_to_data(spec)


@pytest.mark.parametrize("name", specs.LIBRARY)
def test_canonical_json_is_written_and_measured_in_pieces(name: str) -> None:
    """The streamed canonical JSON (row by row, for the digest) is the one-piece dump of
    :func:`spec_to_data`, and :func:`canonical_size` its length in bytes."""
    spec = specs.load_library(name)
    whole = json.dumps(spec_to_data(spec), separators=(",", ":"), ensure_ascii=False)
    assert specs.canonical_json(spec) == whole
    assert canonical_size(spec) == len(whole.encode("utf-8"))


def test_a_vocabulary_too_large_to_hash_is_one_error() -> None:
    """A "*" row over V tokens is V x V canonical entries: 60,000 tokens would be 49 GiB
    of JSON to hash (and a model of 29 GB); refused before hashing, in seconds."""
    tokens = ", ".join(f"t{i}" for i in range(60_000))
    text = MINI_BIG.format(tokens=tokens)
    with pytest.raises(CraftError, match="canonical form would be .* GiB .*60000 tokens"):
        parse_spec(text, "big.yaml")


MINI_BIG = """\
format: craft-spec/1
name: big
vocab: {{T: [{tokens}]}}
max_len: 4
start: {{T: 1}}
rules:
  - bigram: {{"*": {{T: 1}}}}
"""


def test_library_lists_and_loads_without_warnings() -> None:
    assert specs.LIBRARY == [
        "bigram",
        "induction",
        "previous_token",
        "skip_trigram",
        "toy_language",
        "toy_language_brackets",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in specs.LIBRARY:
            spec = specs.load_spec(specs.library_path(name))
            assert len(spec.vocab) <= 20 or name.startswith("toy_language")
            assert spec.max_len <= 32 or name.startswith("toy_language")
    assert specs.library_path("bigram.yaml") == specs.library_path("bigram")


def test_unknown_library_name() -> None:
    with pytest.raises(CraftError, match="no library spec named 'toy'.*toy_language"):
        specs.library_path("toy")


# The seed toy language of BACKGROUND.md, restated independently of the YAML file.
_CATEGORIES = {
    "NOUN": "alice bob carol dave eve frank grace henry",
    "PLACE": "park home store school beach office garden lake",
    "VERB_T": "sees helps finds knows likes meets calls tells",
    "VERB_I": "runs walks sits waits jumps falls swims plays",
    "ADJ": "big small old new red blue fast tall",
    "FUNC": "the a in on at to and or",
    "PUNCT": ". ,",
}
_MATRIX = {  # columns NOUN PLACE VERB_T VERB_I ADJ FUNC PUNCT
    "NOUN": ".05 .10 .25 .15 .00 .15 .30",
    "PLACE": ".05 .00 .05 .05 .00 .40 .45",
    "VERB_T": ".35 .30 .00 .00 .10 .15 .10",
    "VERB_I": ".00 .15 .00 .00 .00 .35 .50",
    "ADJ": ".45 .40 .00 .00 .10 .05 .00",
    "FUNC": ".25 .25 .05 .05 .35 .05 .00",
    "PUNCT": ".05 .00 .10 .10 .05 .70 .00",
}


def test_toy_language_matches_background() -> None:
    spec = specs.load_library("toy_language")
    vocab = spec.vocab
    assert {c: " ".join(t) for c, t in vocab.categories} == _CATEGORIES
    names = spec.rule_names()
    assert names[:8] == tuple(f"{a}-{b}" for a, b in [
        ("the", "alice"), ("the", "bob"), ("the", "carol"), ("the", "dave"),
        ("in", "park"), ("on", "home"), ("at", "store"), ("to", "school"),
    ])  # fmt: skip
    assert names[8:] == (
        "func-noun", "beach-big", "office-small", "garden-old", "lake-new",
        "noun-induction", "noun-bigrams", "place-bigrams", "fallback", "start",
    )  # fmt: skip
    assert all(rule.window == (2, 9) for rule in spec.rules[9:13])
    nouns, verbs = _CATEGORIES["NOUN"].split(), _CATEGORIES["VERB_T"].split()
    noun_bigrams = spec.rules[names.index("noun-bigrams")]
    for i, noun in enumerate(nouns):
        row = noun_bigrams.row(vocab.index(noun)).probs
        for offset, p in enumerate([Fraction(7, 10), Fraction(1, 5), Fraction(1, 10)]):
            assert row[vocab.index(verbs[(3 * i + offset) % 8])] == p
    fallback = spec.rules[names.index("fallback")]
    for source, row_text in _MATRIX.items():
        for token in _CATEGORIES[source].split():
            row = fallback.row(vocab.index(token)).probs
            for target, mass in zip(_CATEGORIES, row_text.split(), strict=True):
                targets = _CATEGORIES[target].split()
                for t in targets:
                    assert row[vocab.index(t)] == Fraction(mass) / len(targets)
    start = _start(spec)
    assert start["alice"] == Fraction(1, 16) and start["the"] == Fraction(3, 80)
    assert start["park"] == Fraction(1, 40) and start["runs"] == 0


SHADOW_BASE = """\
format: craft-spec/1
name: shadow
vocab: {A: [a, b], B: [c, d]}
max_len: 16
start: {A: 1}
rules: []
"""
_FALLBACK = {"bigram": {"*": {"A": 1}}}


def _with_rules(*rules: dict) -> dict:
    data = parse_text(SHADOW_BASE, "shadow.yaml")
    data["rules"] = [*rules, _FALLBACK]
    return data


def _tri(first: object, second: object) -> dict:
    return {"trigram": {"after": [first, second], "next": {"a": 1}}}


def _skip(anchor: object, cue: object, window: list[int]) -> dict:
    return {"skip_bigram": {"anchor": anchor, "cue": cue, "window": window, "next": {"a": 1}}}


SHADOW_CASES = [
    ("bigram", [{"bigram": {"A": {"a": 1}}}, {"bigram": {"a": {"b": 1}}}], "rules[1]"),
    (
        "bigram-union",
        [{"bigram": {"a": {"a": 1}}}, {"bigram": {"b": {"a": 1}}}, {"bigram": {"A": {"a": 1}}}],
        "rules[2]",
    ),
    ("trigram", [_tri("A", "B"), _tri("a", "c")], "rules[1]"),
    ("skip", [_skip("A", "B", [1, 5]), _skip("a", "c", [2, 4])], "rules[1]"),
    ("induction", [{"induction": {"on": "*"}}, {"induction": {"on": "a"}}], "rules[1]"),
    ("bigram-first", [{"bigram": {"c": {"a": 1}}}, {"induction": {"on": "c"}}], "rules[1]"),
    ("bigram-first-trigram", [{"bigram": {"B": {"a": 1}}}, _tri("a", "d")], "rules[1]"),
    ("fallback-last", [{"bigram": {"*": {"a": 1}}}], "rules[1]: rule 'bigram-1'"),
]


@pytest.mark.parametrize(
    ("rules", "where"), [c[1:] for c in SHADOW_CASES], ids=[c[0] for c in SHADOW_CASES]
)
def test_shadowed_rule_warns(rules: list[dict], where: str) -> None:
    with pytest.warns(CraftWarning) as record:
        parse_spec(_with_rules(*rules), "shadow.yaml")
    messages = [str(w.message) for w in record]
    assert any(m.startswith(f"shadow.yaml: {where}") and "never fires" in m for m in messages)
    assert all("fix: remove it, or move it before rules[" in m for m in messages)


NOT_SHADOWED = [
    [_tri("a", "c"), _tri("A", "B")],  # the wider rule comes second: fine
    [_skip("A", "B", [2, 4]), _skip("a", "c", [1, 5])],  # window not inside
    [{"induction": {"on": "a"}}, {"induction": {"on": "A"}}],
    [{"bigram": {"a": {"a": 1}}}, _tri("A", "A")],  # b is not a key yet
]


@pytest.mark.parametrize("rules", NOT_SHADOWED)
def test_no_warning_without_shadowing(rules: list[dict]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_spec(_with_rules(*rules), "shadow.yaml")


def test_readme_example_loads_and_means_what_it_says() -> None:
    readme = (Path(specs.__file__).parent / "README.md").read_text()
    spec = parse_spec(readme.split("```yaml")[1].split("```")[0], "README.md")
    assert spec.rule_names() == ("bob-alice", "echo", "copy", "table", "start")

    def ask(text: str) -> tuple[str, tuple[Fraction, ...]]:
        dist, rule_id = specs.next_dist_exact(spec, specs.encode(spec, text.split()))
        return spec.rule_names()[rule_id], dist.probs

    assert ask("alice sees bob alice runs alice") == ("copy", (0, 0, 0, 1, 0))
    assert ask("bob") == ("table", (0, 0, Fraction(1, 2), Fraction(1, 2), 0))
    assert ask("alice runs sees") == ("echo", (0, 1, 0, 0, 0))
