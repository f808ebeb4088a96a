"""Reading spec text: YAML (or JSON, a subset of YAML) into plain Python data.

Two deliberate departures from PyYAML's ``safe_load``, both because they silently
change a spec:

* Booleans follow YAML 1.2: only ``true``/``false``. Under YAML 1.1 the tokens ``on``,
  ``off``, ``yes`` and ``no`` become booleans, which would turn the key of
  ``induction: {on: NOUN}`` and the seed language's ``on`` token into ``True``.
* A key repeated in one mapping is an error (PyYAML keeps the last one and drops the
  rest, so a bigram row written twice would lose a row without a word).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from specs.errors import CraftError

_BOOL_TAG = "tag:yaml.org,2002:bool"


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and duplicate-key detection."""


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int):
        super().__init__(key, line)
        self.key = key
        self.line = line


def _construct_mapping(loader: _SpecLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        except TypeError:  # an unhashable key: PyYAML reports it below
            continue
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_SpecLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_text(text: str, source: str) -> Any:
    """Parse YAML or JSON text into Python data.

    Args:
        text: the file's contents.
        source: file name used in error messages.

    Returns:
        The parsed document (a dict for any well-formed spec).

    Raises:
        CraftError: invalid YAML (with the line number) or a repeated key.
    """
    try:
        return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise CraftError(
            f"line {exc.line}: the key {exc.key!r} appears twice in one mapping",
            where=source,
            fix="merge the two entries into one (YAML keeps only one of them)",
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = " ".join(str(exc.problem or exc.context or "syntax error").split())
        raise CraftError(
            f"{at}invalid YAML: {problem}",
            where=source,
            fix="correct the syntax there (check indentation, and quote names such as "
            "'.', ',', '*' or ones starting with a symbol)",
        ) from None
    except yaml.YAMLError as exc:
        raise CraftError(
            f"invalid YAML: {' '.join(str(exc).split())}",
            where=source,
            fix="correct the YAML syntax",
        ) from None
    except RecursionError:  # the parser recurses once per level of nesting
        raise CraftError(
            "the YAML nests deeper than the parser can read (a spec nests 4 levels)",
            where=source,
            fix="remove the extra brackets or indentation",
        ) from None
