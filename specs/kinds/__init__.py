"""The registry of rule kinds: one module each, everything ``specs`` knows about it.

:data:`KINDS` lists the kinds in the order the YAML keys are listed in messages; the
generic modules (:mod:`specs.schema`, :mod:`specs.resolve`, :mod:`specs.canonical`,
:mod:`specs.analysis`, :mod:`specs.truth`, :mod:`specs.engine`, :mod:`specs.targeted`,
:mod:`specs.nearmiss`) find a rule's kind with :func:`kind_of` (by rule class) or
:func:`by_key` (by YAML key) and call its hooks (:class:`~specs.kinds.base.Kind`).

Adding a kind: write ``specs/kinds/<key>.py`` (its rule dataclass and a ``KIND``
object implementing :class:`~specs.kinds.base.Kind`; the docstring of
:mod:`specs.kinds.base` lists the hooks and when each is called), then add the module
to :data:`KINDS` below. Other packages (``craft``, ``verify``) dispatch on the rule
classes themselves; a kind they do not know yet is theirs to refuse.
"""

from __future__ import annotations

import functools
import operator

from specs.errors import CraftError
from specs.kinds import bigram, bracket, copy, induction, skip_bigram, trigram
from specs.kinds.base import Kind
from specs.kinds.bigram import Bigram
from specs.kinds.bracket import Bracket
from specs.kinds.copy import Copy
from specs.kinds.induction import Induction
from specs.kinds.skip_bigram import SkipBigram
from specs.kinds.trigram import Trigram

KINDS: tuple[Kind, ...] = (
    bigram.KIND,
    trigram.KIND,
    skip_bigram.KIND,
    induction.KIND,
    bracket.KIND,
    copy.KIND,
)
KEYS: tuple[str, ...] = tuple(kind.key for kind in KINDS)  # the YAML keys, in order
_BY_KEY = {kind.key: kind for kind in KINDS}
_BY_CLASS = {kind.rule_class: kind for kind in KINDS}

Rule = functools.reduce(operator.or_, (kind.rule_class for kind in KINDS))
"""Any resolved rule: the union of the kinds' rule classes (``isinstance`` works)."""


def by_key(key: str) -> Kind:
    """The kind of a YAML key (``"bigram"``); KeyError for an unknown key (the schema
    has refused it before)."""
    return _BY_KEY[key]


def kind_of(rule: object) -> Kind:
    """The kind of a resolved rule, by its class.

    Raises:
        CraftError: an object that is no kind's rule (e.g. a spec built in code).
    """
    kind = _BY_CLASS.get(type(rule))
    if kind is None:
        raise CraftError(
            f"unknown rule kind {type(rule).__name__}", fix="use a rule from specs.model"
        )
    return kind


__all__ = ["KEYS", "KINDS", "Bigram", "Bracket", "Copy", "Induction", "Kind", "Rule"]
__all__ += ["SkipBigram", "Trigram", "by_key", "kind_of"]
