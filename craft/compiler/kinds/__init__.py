"""Rule kinds of the compiler: one module per kind, and the registry that finds them.

Each module holds everything the compiler knows about one kind of spec rule: how the
analysis reads it, the components it needs (with their reads, writes and weights, each
with its derivation), its constants and boosts, its tensor-family conditions, and its
parts of the compact compiler. What several kinds share (the previous-token head, the
readout of a non-deterministic rule, the detector semantics of trigrams and
skip-bigrams) is in :mod:`craft.compiler.kinds.shared`; the interface is
:class:`craft.compiler.kinds.base.RuleKind`. The generic stages (analysis, plan,
constants, assemble, conditions, compact) never name a kind: they call these hooks.

Adding a rule kind
------------------

1. Add its spec rule class (the ``specs`` package: schema, condition, exact law).
2. Write ``craft/compiler/kinds/<kind>.py``: a subclass of
   :class:`~craft.compiler.kinds.base.RuleKind` (or of
   :class:`~craft.compiler.kinds.shared.DetectorKind` when it reads as "the current
   token is a cue and an anchor stands in a window"), its component dataclasses
   (subclasses of :class:`~craft.compiler.kinds.base.Component`) and one instance.
3. Add that instance to :func:`registry` below (one line).

The stages call the hooks in this order (defaults in :class:`RuleKind` say which a kind
may leave alone):

* analysis (:func:`craft.compiler.analysis.analyse`): ``direct`` (rows it puts on the
  direct path), ``read`` (its cue, anchor, window and distribution, or None for a
  direct-path rule); later ``max_count``, ``holds`` and ``implies`` (priority gates).
* plan (:func:`craft.compiler.plan.components`): flags ``needs_prev`` (the
  previous-token head), ``fires`` (a ``fire:<rule>`` feature that gates and readouts
  read); ``shared_components`` (heads several of its rules share, once per kind, in
  registry order), then ``rule_components`` (per rule, in rule order); readouts of
  non-deterministic rules are shared. Each component says what it reads, writes and
  adds to the residual, and builds its own circuits and unembedding rows.
* constants (:func:`craft.compiler.constants.derive`): ``weights`` then ``scores``
  (construction constants, computed for every registered kind so the report's table
  is the same for every spec), ``tensor_boost`` and ``exponential`` (tensor boosts,
  float limits).
* conditions (:func:`craft.compiler.conditions.tensor_conditions`): ``tensor_conditions``.
* compact (:mod:`craft.compiler.compact`): ``prev_sets``, ``copies``, ``compact_heads``
  (once per kind, registry order), ``compact_head`` (weights of each head),
  ``compact_read_row``; the tensor family: ``tensor_compact``, ``tensor_head``.
* reports: ``group`` (the loss-curve group of :mod:`craft.train.plot`).

The registry is resolved on first use, not at import: kind modules import the generic
stages, which call back into the registry.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from specs.errors import CraftError

if TYPE_CHECKING:
    from craft.compiler.kinds.base import RuleKind


@cache
def registry() -> tuple[RuleKind, ...]:
    """Every rule kind the compiler builds, in the order the stages visit kinds (the
    compact compiler plans its layer-0 constructions, skip-bigram detectors, first)."""
    from craft.compiler.kinds import bigram, bracket, copy, induction, skip_bigram, trigram

    return (
        bigram.BIGRAM,
        skip_bigram.SKIP_BIGRAM,
        trigram.TRIGRAM,
        induction.INDUCTION,
        copy.COPY,
        bracket.BRACKET,
    )


@cache
def _by_rule() -> dict[type, RuleKind]:
    return {kind.rule: kind for kind in registry()}


@cache
def _by_name() -> dict[str, RuleKind]:
    return {kind.name: kind for kind in registry()}


def kind_of(rule) -> RuleKind:
    """The kind object of a spec rule (by its class, or the nearest registered base)."""
    for cls in type(rule).__mro__:
        if cls in _by_rule():
            return _by_rule()[cls]
    name = getattr(rule, "name", "?")
    raise CraftError(
        f"the compiler has no construction for {type(rule).__name__} rules yet (rule {name!r})",
        fix="compile a spec without such rules",
    )


def kind_named(name: str) -> RuleKind:
    """The kind object named ``name`` (``RuleInfo.kind``)."""
    return _by_name()[name]


__all__ = ["kind_named", "kind_of", "registry"]
