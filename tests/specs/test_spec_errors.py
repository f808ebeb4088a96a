"""Every loading check fires, as ONE line naming the file, the YAML path and the fix."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest

from specs import CraftError, load_spec, parse_spec
from specs.yamlio import parse_text

BASE_YAML = """\
format: craft-spec/1
name: mini
vocab:
  NOUN: [alice, bob]
  VERB: [runs, sees]
  END: ["."]
max_len: 8
start: {NOUN: 1}
rules:
  - name: tri
    trigram: {after: [alice, runs], next: {".": 1}}
  - name: skip
    skip_bigram: {anchor: alice, cue: sees, window: [2, 4], next: {bob: 1}}
  - name: ind
    induction: {on: NOUN}
  - name: table
    bigram: {alice: {runs: 0.7, sees: 0.3}, NOUN: {VERB: 1}, "*": {NOUN: 1/2, ".": 1/2}}
"""
SOURCE = "mini.yaml"


def _set(*path_and_value: object) -> Callable[[dict], None]:
    """Mutation: set data[p0][p1]...[pn] = value."""
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


def _table(row: dict) -> Callable[[dict], None]:
    return _set("rules", 3, "bigram", row)


# (id, mutation, substrings the one-line message must contain)
CASES: list[tuple[str, Callable[[dict], None], list[str]]] = [
    ("format-missing", _delete("format"), ["mini.yaml: format: missing required key"]),
    ("format-wrong", _set("format", "craft-spec/2"), ["format: unsupported format 'craft-spec/2'"]),
    (
        "name-missing",
        _delete("name"),
        ["mini.yaml: name: missing required key", "add `name:` at the top level"],
    ),
    ("vocab-missing", _delete("vocab"), ["mini.yaml: vocab: missing required key"]),
    ("max-len-missing", _delete("max_len"), ["mini.yaml: max_len: missing required key"]),
    ("start-missing", _delete("start"), ["mini.yaml: start: missing required key"]),
    ("rules-missing", _delete("rules"), ["mini.yaml: rules: missing required key"]),
    (
        "next-missing",
        _delete("rules", 0, "trigram", "next"),
        ["rules[0].trigram.next: missing", "under rules[0].trigram"],
    ),
    ("unknown-top-key", _set("author", "me"), ["mini.yaml: author: unknown key", "max_len"]),
    ("unknown-rule-key", _set("rules", 0, "prio", 1), ["rules[0].prio: unknown key", "trigram"]),
    ("unknown-skip-key", _set("rules", 1, "skip_bigram", "windw", [1, 2]), ["skip_bigram.windw"]),
    ("name-type", _set("name", 3), ["name: expected a string, got the integer 3"]),
    ("max-len-string", _set("max_len", "8"), ["max_len: expected an integer"]),
    ("max-len-bool", _set("max_len", True), ["max_len: expected an integer, got the boolean"]),
    ("max-len-zero", _set("max_len", 0), ["max_len: 0 is out of range", "between 1 and"]),
    ("max-len-huge", _set("max_len", 513), ["max_len:", "1..512"]),
    ("vocab-list", _set("vocab", ["alice"]), ["vocab: expected a mapping, got a list"]),
    ("category-not-list", _set("vocab", "NOUN", "alice"), ["vocab.NOUN: expected a list"]),
    ("token-type", _set("vocab", "NOUN", ["alice", 3]), ["vocab.NOUN[1]: expected a string"]),
    ("category-key-type", _set("vocab", 7, ["x"]), ["vocab: the key the integer 7"]),
    ("token-in-two", _set("vocab", "VERB", ["runs", "sees", "alice"]), ["vocab.VERB[2]", "'NOUN'"]),
    ("token-twice", _set("vocab", "NOUN", ["alice", "bob", "alice"]), ["vocab.NOUN[2]", "twice"]),
    ("category-is-token", _set("vocab", "runs", ["jumps"]), ["vocab.runs: category 'runs'"]),
    ("reserved-bos", _set("vocab", "END", [".", "<bos>"]), ["vocab.END[1]: '<bos>' is reserved"]),
    ("reserved-star", _set("vocab", "END", [".", "*"]), ["vocab.END[1]: '*' is reserved"]),
    ("reserved-category", _set("vocab", "*", ["x"]), ["vocab[\"*\"]: '*' is reserved"]),
    ("empty-category", _set("vocab", "END", []), ["vocab.END: category 'END' is empty"]),
    ("empty-vocab", _set("vocab", {}), ["vocab: the vocabulary is empty"]),
    ("token-space", _set("vocab", "END", ["full stop"]), ["vocab.END[0]", "whitespace"]),
    ("unknown-next", _set("start", {"NOUN": 0.5, "carl": 0.5}), ["start.carl: unknown token"]),
    ("unknown-key", _table({"VERBS": {"NOUN": 1}}), ["bigram.VERBS: unknown", "'VERB'"]),
    (
        "unknown-after",
        _set("rules", 0, "trigram", "after", ["alice", "ran"]),
        ["after[1]: unknown"],
    ),
    ("unknown-anchor", _set("rules", 1, "skip_bigram", "anchor", "x"), ["skip_bigram.anchor: unk"]),
    ("unknown-on", _set("rules", 2, "induction", "on", ["NOUN", "x"]), ["induction.on: unknown"]),
    ("prob-negative", _table({"*": {"runs": 1.2, "sees": -0.2}}), ['["*"].sees: probability -1/5']),
    (
        "prob-sum",
        _table({"*": {"runs": 0.7, "sees": 0.5}}),
        ['rules[3].bigram["*"]: probabilities sum to 6/5, expected 1', "sum to 1"],
    ),
    ("prob-sum-start", _set("start", {"NOUN": "1/3"}), ["start: probabilities sum to 1/3"]),
    ("prob-text", _table({"*": {"runs": "seventy"}}), ['["*"].runs: cannot read the string']),
    ("prob-bool", _table({"*": {"runs": True}}), ["expected a probability, got the boolean"]),
    ("prob-list", _table({"*": {"runs": [1]}}), ["expected a probability, got a list"]),
    ("prob-div-zero", _table({"*": {"runs": "1/0"}}), ["divides by zero"]),
    ("prob-inf", _table({"*": {"runs": float("inf")}}), ["not a finite number"]),
    ("prob-nan", _table({"*": {"runs": float("nan")}}), ["not a finite number"]),
    ("next-empty", _table({"*": {}}), ['rules[3].bigram["*"]: empty distribution']),
    ("next-not-map", _table({"*": "runs"}), ['bigram["*"]: expected a mapping']),
    ("window-lo-zero", _set("rules", 1, "skip_bigram", "window", [0, 3]), ["window [0, 3] is out"]),
    ("window-reversed", _set("rules", 1, "skip_bigram", "window", [4, 2]), ["window [4, 2]"]),
    ("window-hi-max", _set("rules", 1, "skip_bigram", "window", [2, 8]), ["< max_len (8)"]),
    (
        "window-short",
        _set("rules", 1, "skip_bigram", "window", [2]),
        ["window: `window` has 1 item,"],
    ),
    (
        "window-type",
        _set("rules", 1, "skip_bigram", "window", ["a", 2]),
        ["window[0]: expected an"],
    ),
    ("duplicate-names", _set("rules", 1, "name", "tri"), ["rules[1].name: duplicate rule name"]),
    ("reserved-rule-name", _set("rules", 1, "name", "start"), ["rules[1].name:", "reserved"]),
    ("rule-name-type", _set("rules", 0, "name", 5), ["rules[0].name: expected a string"]),
    ("rule-no-kind", _set("rules", 2, {"name": "x"}), ["rules[2]: the rule has no rule kind"]),
    ("rule-two-kinds", _set("rules", 2, "bigram", {"*": {"NOUN": 1}}), ["rules[2]:", "2 kinds"]),
    ("rule-not-map", _set("rules", 0, "bigram"), ["rules[0]: expected a mapping"]),
    ("rules-not-list", _set("rules", {"a": 1}), ["rules: expected a list"]),
    ("after-three", _set("rules", 0, "trigram", "after", ["alice", "runs", "."]), ["has 3 items"]),
    (
        "after-one",
        _set("rules", 0, "trigram", "after", ["alice"]),
        ["trigram.after: `after` has 1 item,"],
    ),
    (
        "uncovered",
        _table({"alice": {"runs": 1}, "NOUN": {"VERB": 1}}),
        ["mini.yaml: rules: no rule covers the context [<bos>, runs]", '"*" key'],
    ),
    ("no-rules", _set("rules", []), ["rules: no rule covers the context [<bos>, alice]"]),
    ("bigram-empty", _table({}), ["rules[3].bigram: empty bigram table"]),
    ("on-empty", _set("rules", 2, "induction", "on", []), ["induction.on: empty list"]),
    ("on-type", _set("rules", 2, "induction", "on", 3), ["induction.on: expected a token"]),
    ("selector-item", _set("rules", 2, "induction", "on", ["NOUN", 2]), ["item 1 is the integer"]),
]


def _base() -> dict:
    return parse_text(BASE_YAML, SOURCE)


def _assert_one_line(error: CraftError, *substrings: str) -> None:
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"{SOURCE}: ") or message.startswith("mini.yaml")
    assert "; fix: " in message
    for substring in substrings:
        assert substring in message, message


def test_base_spec_loads() -> None:
    spec = parse_spec(BASE_YAML, SOURCE)
    assert spec.rule_names() == ("tri", "skip", "ind", "table", "start")


@pytest.mark.parametrize(
    ("mutation", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_check_fires(mutation: Callable[[dict], None], expected: list[str]) -> None:
    data = copy.deepcopy(_base())
    mutation(data)
    with pytest.raises(CraftError) as info:
        parse_spec(data, SOURCE)
    _assert_one_line(info.value, *expected)


@pytest.mark.parametrize(
    ("top", "expected"), [([1, 2], "the top level is a list"), (None, "the top level is null")]
)
def test_top_level_must_be_a_mapping(top: object, expected: str) -> None:
    with pytest.raises(CraftError) as info:
        parse_spec(top, SOURCE)  # type: ignore[arg-type]
    _assert_one_line(info.value, expected)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(CraftError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}: cannot read the spec file")
    assert "fix: check the path" in str(info.value)


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(CraftError, match="cannot read the spec file"):
        load_spec(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"format: \xff\xfe\n")
    with pytest.raises(CraftError, match="not UTF-8"):
        load_spec(path)


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BASE_YAML.replace("VERB: [runs, sees]", "VERB: [runs, sees"))
    with pytest.raises(CraftError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line 6, column")
    assert "invalid YAML" in message and "\n" not in message


def test_duplicate_yaml_key_is_an_error() -> None:
    text = BASE_YAML.replace("start: {NOUN: 1}", "start: {NOUN: 1}\nstart: {VERB: 1}")
    with pytest.raises(CraftError) as info:
        parse_spec(text, SOURCE)
    assert str(info.value).startswith("mini.yaml: line 9: the key 'start' appears twice")


def test_yaml_11_booleans_are_strings() -> None:
    """``on``/``yes``/``no`` stay names (YAML 1.2), so `induction: {on: ...}` works."""
    text = BASE_YAML.replace('END: ["."]', 'END: [".", yes, no, off]')
    spec = parse_spec(text, SOURCE)
    assert spec.vocab.tokens[-3:] == ("yes", "no", "off")
    assert spec.rules[2].on == frozenset({0, 1})


def test_only_craft_errors_escape_for_odd_python_inputs() -> None:
    odd: list[object] = [3, "", "[", {"format": "craft-spec/1", "vocab": {(1, 2): ["a"]}}]
    for data in odd:
        with pytest.raises(CraftError):
            parse_spec(data, SOURCE)  # type: ignore[arg-type]
