"""Names a reader cannot see, or cannot tell apart (issue #11, class 10).

Invisible characters (zero-width spaces and joiners, bidirectional overrides,
controls) in a token, category or rule name are refused in one line; names that print
alike after Unicode NFKC normalisation get a warning; ``overall`` is reserved for the
all-rules figure that sits beside the per-rule ones in logs and reports.
"""

from __future__ import annotations

import warnings

import pytest

from specs import CraftError, CraftWarning, parse_spec

TEMPLATE = """\
format: craft-spec/1
name: names
vocab: {{{cat}: [alice, {token}]}}
max_len: 4
start: {{{cat}: 1}}
rules:
  - name: {rule}
    bigram: {{"*": {{{cat}: 1}}}}
"""


def spec(token: str = "bob", rule: str = "table", cat: str = "N") -> str:
    return TEMPLATE.format(token=token, rule=rule, cat=cat)


@pytest.mark.parametrize(
    ("field", "value", "hidden"),
    [
        ("token", '"alice\\u200b"', "U+200B ZERO WIDTH SPACE"),
        ("token", '"bo\\u202eb"', "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("token", '"b\\u200dob"', "U+200D ZERO WIDTH JOINER"),
        ("cat", '"N\\u0007"', "U+0007"),
        ("rule", '"table\\u2066"', "U+2066"),
    ],
)
def test_invisible_characters_are_refused(field: str, value: str, hidden: str) -> None:
    with pytest.raises(CraftError) as info:
        parse_spec(spec(**{field: value}), "names.yaml")
    line = str(info.value)
    assert line.startswith("names.yaml: ") and "\n" not in line
    assert "invisible character" in line and "fix:" in line
    if field != "rule":
        assert hidden in line


def test_names_that_print_alike_warn() -> None:
    with pytest.warns(CraftWarning, match="'file' and 'ﬁle' print alike"):
        parse_spec(spec(token='"ﬁle"').replace("alice", "file"), "names.yaml")


def test_distinct_names_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_spec(spec(token="Alice"), "names.yaml")  # case differs: visibly distinct


def test_overall_is_a_reserved_rule_name() -> None:
    with pytest.raises(CraftError, match="rules\\[0\\].name: rule name 'overall' is reserved"):
        parse_spec(spec(rule="overall"), "names.yaml")


def test_through_the_cli_it_is_one_line_and_nothing_is_written(tmp_path, capsys) -> None:
    from tests.refusals import error_line, run, snapshot

    path = tmp_path / "names.yaml"
    path.write_text(spec(token='"alice\\u200b"'), encoding="utf-8")
    before = snapshot(tmp_path)
    code, _, err = run(capsys, "compile", path, "-o", tmp_path / "m.safetensors")
    error_line(code, err, str(path), "vocab.N[1]", "U+200B ZERO WIDTH SPACE", "fix:")
    assert snapshot(tmp_path) == before
