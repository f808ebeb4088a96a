"""The bracket and copy kinds: golden cases, loading errors, canonical form, shadowing,
and the kind registry itself (one module per kind, no type tests in generic modules)."""

from __future__ import annotations

import copy
import json
import re
import warnings
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest

import specs
from specs import CraftError, CraftWarning, parse_spec, spec_to_data
from specs.canonical import canonical_size
from specs.kinds import KEYS, KINDS, by_key, kind_of
from specs.yamlio import parse_text
from tests.golden import GoldenCase
from tests.specs.golden_kinds import GOLDEN_KINDS, NEW_CASE_SPECS

NEW_KIND_SPECS = ("previous_token", "toy_language_brackets")
NEW_SPECS = {name: specs.load_library(name) for name in NEW_KIND_SPECS}


# ---- golden cases ------------------------------------------------------------------


@pytest.mark.parametrize("case", GOLDEN_KINDS, ids=[case.id for case in GOLDEN_KINDS])
def test_golden_kind_case(case: GoldenCase) -> None:
    spec = NEW_SPECS[case.spec]
    assert sum(Fraction(p) for p in case.expected.values()) == 1, "the case itself is wrong"
    context = specs.encode(spec, case.context)
    dist, rule_id = specs.next_dist_exact(spec, context)
    assert spec.rule_names()[rule_id] == case.rule
    assert dist.probs == case.expected_probs(spec.vocab.tokens)
    probs, rule_ids = specs.truth(spec, [[len(spec.vocab), *context]])
    assert probs[0, -1].tolist() == [float(p) for p in dist.probs]
    assert rule_ids[0, -1] == rule_id


def test_golden_kinds_cover_the_new_kinds_of_every_new_kind_spec() -> None:
    assert (
        sorted(NEW_SPECS)
        == sorted(NEW_CASE_SPECS)
        == ["previous_token", "toy_language_brackets"]
    )
    counts = {"bracket": 0, "copy": 0}
    for case in GOLDEN_KINDS:
        spec = NEW_SPECS[case.spec]
        rule_id = specs.rule_index(spec, case.rule)
        if rule_id < spec.start_rule_id and kind_of(spec.rules[rule_id]).key in counts:
            counts[kind_of(spec.rules[rule_id]).key] += 1
    for name, spec in NEW_SPECS.items():
        covered = {case.rule for case in GOLDEN_KINDS if case.spec == name}
        new = {r.name for r in spec.rules if kind_of(r).key in counts}
        assert new and new <= covered and "start" in covered, name
    assert min(counts.values()) >= 3, counts


def test_the_new_kinds_specs_load_without_warnings_into_the_library() -> None:
    assert set(NEW_KIND_SPECS) <= set(specs.LIBRARY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in NEW_KIND_SPECS:
            specs.load_library(name)
    toy = NEW_SPECS["toy_language_brackets"]
    assert len(toy.vocab) == 54 and toy.vocab.categories[-1] == ("BRACKET", ("(", ")", "[", "]"))
    base = specs.load_library("toy_language")
    assert toy.vocab.categories[:-1] == base.vocab.categories
    prev = NEW_SPECS["previous_token"]
    assert len(prev.vocab) == 17 and prev.max_len == 32


# ---- loading errors ------------------------------------------------------------------

BASE_YAML = """\
format: craft-spec/1
name: kinds
vocab:
  W: [a, b]
  B: ["(", ")", "[", "]"]
  P: [".", "?"]
max_len: 8
start: {W: 1}
rules:
  - name: close
    bracket: {pairs: {"(": ")", "[": "]"}, cue: "."}
  - name: echo
    copy: {cue: "?", offset: 1}
  - bigram: {"*": {"*": 1}}
"""
SOURCE = "kinds.yaml"


def _set(*path_and_value: object) -> Callable[[dict], None]:
    *path, value = path_and_value

    def mutate(data: dict) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _delete(*path: object) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def _pairs(pairs: object) -> Callable[[dict], None]:
    return _set("rules", 0, "bracket", "pairs", pairs)


_P = "kinds.yaml: rules[0].bracket.pairs"
ERROR_CASES: list[tuple[str, Callable[[dict], None], list[str]]] = [
    ("pairs-empty", _pairs({}), [f"{_P}: empty bracket pairs", 'such as `"(": ")"`']),
    ("pairs-self", _pairs({"(": "("}), [f"{_P}[\"(\"]: '(' is its own closer"]),
    (
        "pairs-closer-twice",
        _pairs({"(": ")", "[": ")"}),
        [f"{_P}[\"[\"]: token ')' is in two pairs: the closer of '[' and the closer of '('"],
    ),
    (
        "pairs-closer-opens",
        _pairs({"(": ")", ")": "]"}),
        ["token ')' is in two pairs: the opener of ')' and the closer of '('", "one pair only"],
    ),
    (
        "pairs-opener-closes",
        _pairs({"(": "[", "[": "]"}),
        ["token '[' is in two pairs: the opener of '[' and the closer of '('"],
    ),
    ("pairs-category", _pairs({"B": ")"}), [f"{_P}.B: the opener 'B' is a category, not a token"]),
    ("pairs-star", _pairs({"(": "*"}), ["the closer '*' is every token, not a token"]),
    ("pairs-unknown", _pairs({"(": "}"}), [f"{_P}[\"(\"]: unknown token or category '}}'"]),
    ("pairs-typo", _pairs({"[": "]]"}), ["unknown token or category ']]'", "did you mean"]),
    ("pairs-list", _pairs(["(", ")"]), [f"{_P}: expected a mapping, got a list"]),
    ("pairs-value-type", _pairs({"(": 3}), [f'{_P}["("]: expected a string, got the integer 3']),
    (
        "cue-opener",
        _set("rules", 0, "bracket", "cue", ["(", "."]),
        ["rules[0].bracket.cue: the cue token '(' is also the opener of '('", "neither open"],
    ),
    (
        "cue-category-with-closer",
        _set("rules", 0, "bracket", "cue", "B"),
        ["rules[0].bracket.cue: the cue token '(' is also the opener of '('"],
    ),
    ("cue-unknown", _set("rules", 0, "bracket", "cue", "!"), ["bracket.cue: unknown token"]),
    ("cue-empty", _set("rules", 0, "bracket", "cue", []), ["bracket.cue: empty list"]),
    ("cue-missing", _delete("rules", 0, "bracket", "cue"), ["bracket.cue: missing required key"]),
    ("bracket-key", _set("rules", 0, "bracket", "depth", 2), ["bracket.depth: unknown key"]),
    ("bracket-not-map", _set("rules", 0, "bracket", "("), ["rules[0].bracket: expected a mapping"]),
    (
        "offset-zero",
        _set("rules", 1, "copy", "offset", 0),
        ["kinds.yaml: rules[1].copy.offset: offset 0 is out of range", "1 <= k < max_len (8)"],
    ),
    ("offset-max", _set("rules", 1, "copy", "offset", 8), ["offset 8 is out of range"]),
    ("offset-negative", _set("rules", 1, "copy", "offset", -2), ["offset -2 is out of range"]),
    (
        "offset-string",
        _set("rules", 1, "copy", "offset", "1"),
        ["copy.offset: expected an integer"],
    ),
    ("offset-bool", _set("rules", 1, "copy", "offset", True), ["got the boolean true"]),
    ("offset-missing", _delete("rules", 1, "copy", "offset"), ["copy.offset: missing required"]),
    ("copy-cue-unknown", _set("rules", 1, "copy", "cue", "x"), ["copy.cue: unknown token"]),
    ("copy-key", _set("rules", 1, "copy", "window", [1, 2]), ["copy.window: unknown key"]),
    (
        "two-kinds",
        _set("rules", 1, "bracket", {"pairs": {"(": ")"}, "cue": "."}),
        ["rules[1]: the rule has 2 kinds (bracket, copy)"],
    ),
    ("rule-key", _set("rules", 1, "copies", {}), ["rules[1].copies: unknown key", "bracket, copy"]),
    (
        "no-kind",
        _set("rules", 1, {"name": "x"}),
        ["no rule kind", "exactly one of bigram, trigram, skip_bigram, induction, bracket, copy"],
    ),
]


@pytest.mark.parametrize(
    ("mutation", "expected"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_each_kind_check_fires(mutation: Callable[[dict], None], expected: list[str]) -> None:
    data = copy.deepcopy(parse_text(BASE_YAML, SOURCE))
    mutation(data)
    with pytest.raises(CraftError) as info:
        parse_spec(data, SOURCE)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{SOURCE}: ") and "; fix: " in message
    for substring in expected:
        assert substring in message, message


def test_base_spec_and_readme_error_lines() -> None:
    """The error lines shown in specs/README.md are the ones the loader writes."""
    assert parse_spec(BASE_YAML, SOURCE).rule_names() == ("close", "echo", "bigram-2", "start")
    readme = (Path(specs.__file__).parent / "README.md").read_text()
    shown = [
        line
        for line in readme.splitlines()
        if re.match(r"toy.yaml: rules\[\d\]\.(bracket|copy)", line)
    ]
    data = parse_text(BASE_YAML, SOURCE)
    data["rules"][:0] = [{"bigram": {"a": {"a": 1}}}, {"bigram": {"b": {"a": 1}}}]
    mutations = [
        _set("rules", 2, "bracket", "pairs", {"(": "("}),
        _set("rules", 2, "bracket", "pairs", {"(": ")", "[": ")"}),
        _set("rules", 2, "bracket", "cue", [")"]),
        _set("rules", 3, "copy", "offset", 8),
    ]
    got = []
    for mutate in mutations:
        mutated = copy.deepcopy(data)
        mutate(mutated)
        with pytest.raises(CraftError) as info:
            parse_spec(mutated, "toy.yaml")
        got.append(str(info.value))
    assert shown == got


# ---- canonical form ---------------------------------------------------------------


@pytest.mark.parametrize("name", NEW_KIND_SPECS)
def test_pending_canonical_form_round_trips_and_is_measured(name: str) -> None:
    spec = NEW_SPECS[name]
    again = parse_spec(json.loads(specs.canonical_json(spec)), spec.source)
    assert again == spec and spec_to_data(again) == spec_to_data(spec)
    whole = json.dumps(spec_to_data(spec), separators=(",", ":"), ensure_ascii=False)
    assert specs.canonical_json(spec) == whole
    assert canonical_size(spec) == len(whole.encode("utf-8"))


def test_the_digest_covers_the_new_kinds() -> None:
    base = parse_spec(BASE_YAML).sha256
    same = BASE_YAML.replace('{"(": ")", "[": "]"}', '{"[": "]", "(": ")"}')
    assert parse_spec(same).sha256 == base  # pair order does not matter
    assert parse_spec(BASE_YAML.replace('cue: "?", offset: 1', "cue: P, offset: 1")).sha256 != base
    assert parse_spec(BASE_YAML.replace("offset: 1", "offset: 2")).sha256 != base
    assert parse_spec(BASE_YAML.replace('"[": "]"}', '"[": "]", "a": "b"}')).sha256 != base
    assert parse_spec(BASE_YAML.replace('cue: "."}', 'cue: [".", "?"]}')).sha256 != base
    data = spec_to_data(parse_spec(BASE_YAML))
    assert data["rules"][0] == {
        "name": "close",
        "bracket": {"pairs": {"(": ")", "[": "]"}, "cue": ["."]},
    }
    assert data["rules"][1] == {"name": "echo", "copy": {"cue": ["?"], "offset": 1}}


# ---- shadowing ---------------------------------------------------------------------

_BRACKET = {"bracket": {"pairs": {"(": ")"}, "cue": "."}}
_BRACKETS = {"bracket": {"pairs": {"(": ")", "[": "]"}, "cue": [".", "?"]}}
_COPY = {"copy": {"cue": "?", "offset": 1}}
_COPY_WIDE = {"copy": {"cue": "P", "offset": 1}}
_FALLBACK = {"bigram": {"*": {"*": 1}}}

SHADOWED = [
    ("bigram-above-bracket", [{"bigram": {"P": {"a": 1}}}, _BRACKET], "rules[1]"),
    ("bigram-above-copy", [{"bigram": {"?": {"a": 1}}}, _COPY], "rules[1]"),
    (
        "same-pairs-wider-cue",
        [_BRACKETS, _BRACKETS | {"bracket": {**_BRACKETS["bracket"], "cue": "."}}],
        "rules[1]",
    ),
    ("copy-wider-cue", [_COPY_WIDE, _COPY], "rules[1]"),
]
NOT_SHADOWED = [
    [_BRACKET, _BRACKETS],  # other pairs: another stack
    [_BRACKETS, _BRACKET],
    [{"copy": {"cue": "P", "offset": 2}}, _COPY],  # another offset
    [_COPY, _COPY_WIDE],  # the wider rule comes second
    [{"bigram": {".": {"a": 1}}}, _COPY_WIDE],  # "?" is not a key yet
]


def _with_rules(*rules: dict) -> dict:
    data = parse_text(BASE_YAML, SOURCE)
    data["rules"] = [*rules, _FALLBACK]
    return data


@pytest.mark.parametrize(
    ("rules", "where"), [c[1:] for c in SHADOWED], ids=[c[0] for c in SHADOWED]
)
def test_shadowed_new_kind_warns(rules: list[dict], where: str) -> None:
    with pytest.warns(CraftWarning) as record:
        parse_spec(_with_rules(*rules), SOURCE)
    messages = [str(w.message) for w in record]
    assert any(m.startswith(f"{SOURCE}: {where}") and "never fires" in m for m in messages)


@pytest.mark.parametrize("rules", NOT_SHADOWED)
def test_new_kinds_not_shadowed(rules: list[dict]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_spec(_with_rules(*rules), SOURCE)


# ---- the registry ----------------------------------------------------------------


def test_registry_lookups() -> None:
    assert KEYS == ("bigram", "trigram", "skip_bigram", "induction", "bracket", "copy")
    spec = parse_spec(BASE_YAML)
    for kind in KINDS:
        assert by_key(kind.key) is kind
        assert isinstance(kind.rule_class, type) and issubclass(kind.rule_class, specs.Rule)
    assert [kind_of(r).key for r in spec.rules] == ["bracket", "copy", "bigram"]
    assert isinstance(spec.rules[0], specs.Bracket) and isinstance(spec.rules[1], specs.Copy)
    with pytest.raises(CraftError, match="unknown rule kind str"):
        kind_of("bigram")


def test_generic_modules_do_not_test_rule_types() -> None:
    """Adding a kind touches specs/kinds only: no isinstance on a rule class elsewhere."""
    names = "|".join(kind.rule_class.__name__ for kind in KINDS)
    pattern = re.compile(rf"isinstance\([^)]*\b({names})\b")
    for path in Path(specs.__file__).parent.glob("*.py"):
        assert not pattern.search(path.read_text()), path.name
