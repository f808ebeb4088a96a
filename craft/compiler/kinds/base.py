"""The interface of a rule kind, and the base of every one-hot component.

A :class:`RuleKind` is a stateless object with one method per question a compiler stage
asks about a rule of that kind; its defaults are what a kind with nothing to say there
gets. A :class:`Component` is a frozen dataclass (a node of the plan graph) that knows
what it reads and writes, what it adds to the residual layout, and its own weights.
:mod:`craft.compiler.kinds` says which stage calls which hook, and in what order.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from craft.compiler.analysis import log_probs
from craft.models.components import ComponentKind, Sublayer
from craft.models.layout import Direction, Layout
from specs.model import Dist

if TYPE_CHECKING:
    from craft.compiler.analysis import Analysis, RuleInfo
    from craft.compiler.compact.codes import Codes
    from craft.compiler.compact.common import HeadPlan, Interference
    from craft.compiler.compact.heads import PosFrame
    from craft.compiler.conditions import Condition
    from craft.compiler.constants import Constants
    from craft.compiler.primitives import HeadCircuit, UnitCircuit


@dataclass(frozen=True)
class Reading:
    """How the analysis reads a rule: a detector on the current token ``x[t]`` (its cue),
    before priorities narrow the cue. ``anchor``/``window``: what it looks back for and
    how far (None: no anchor); ``next``: its distribution (None: a copied token)."""

    cue: frozenset[int]
    anchor: frozenset[int] | None
    window: tuple[int, int] | None
    next: Dist | None


class Band(IntEnum):
    """Where a component's own directions sit in the one-hot residual layout, after
    ``bos, one, tok:*, pos:*``: ``prev:*``, then ``fire:*`` (one per rule that fires, in
    rule order), then output features (``copy[r]:*``), then ``read:*``."""

    PREV = 0
    FIRE = 1
    OUTPUT = 2
    READ = 3


class Component:
    """Base of the one-hot compiler's components. Subclasses are frozen dataclasses with
    ``name`` and ``sublayer`` fields; ``kind`` is their :class:`ComponentKind`."""

    kind: ClassVar[ComponentKind]
    band: ClassVar[Band] = Band.OUTPUT
    final: ClassVar[bool] = False  # placed in the final MLP (it overwrites ``tok:*``)
    name: str
    sublayer: Sublayer

    def rule_names(self) -> tuple[str, ...]:
        """The rules it serves (its component record's ``rules``)."""
        return ()

    def reads(self, an: Analysis) -> set[Direction]:
        """Residual subspaces it reads (``Direction(name, None)``) or directions."""
        return set()

    def writes(self, an: Analysis) -> set[Direction]:
        """Residual subspaces it writes, or directions."""
        return set()

    def residual(self, an: Analysis) -> tuple[Direction, ...]:
        """Directions it adds to the layout, in its :attr:`band`."""
        return ()

    def circuits(self, an: Analysis, k: Constants, tensor: bool) -> HeadCircuit | list[UnitCircuit]:
        """Its head circuit, or its MLP units (:mod:`craft.compiler.primitives`)."""
        raise NotImplementedError(type(self).__name__)

    def unembed(self, an: Analysis, k: Constants, w_u: np.ndarray, layout: Layout) -> None:
        """Write the unembedding rows of the features it owns into ``w_u`` [D, V]."""


def named(c, name: str):
    """``c`` with its ``name`` set (components are frozen; named once, before planning)."""
    object.__setattr__(c, "name", name)
    return c


class RuleKind:
    """One kind of spec rule: every hook a compiler stage calls, with its default.

    Attributes:
        name: ``RuleInfo.kind``. rule: the spec rule class.
        needs_prev: it reads ``x[t-1]`` through the previous-token head.
        fires: it writes a ``fire:<rule>`` feature (read by gates and readout cancels).
        copies: its output is a token copied from the context (the compact output code
            then spans the vocabulary).
        exponential: its tensor-family feature grows as ``RATIO**max_len`` (a rule above
            it pays for that part's rounding; float32 stops at some ``max_len``).
        tensor_compact: the compact tensor compiler builds it.
    """

    name: ClassVar[str]
    rule: ClassVar[type]
    needs_prev: ClassVar[bool] = False
    fires: ClassVar[bool] = False
    copies: ClassVar[bool] = False
    exponential: ClassVar[bool] = False
    tensor_compact: ClassVar[bool] = False

    def __repr__(self) -> str:
        return self.name

    # -- analysis ----------------------------------------------------------------------
    def direct(self, rule) -> tuple[tuple[int, Dist], ...]:
        """``(token, row)`` pairs it puts on the direct path (the first rule giving a
        token a row wins)."""
        return ()

    def read(self, rule) -> Reading | None:
        """How the analysis reads it; None for a rule only on the direct path."""
        return None

    def max_count(self, r: RuleInfo, max_len: int) -> float:
        """Largest value its feature takes in the tensor family."""
        raise NotImplementedError(self.name)

    def holds(self, r: RuleInfo, ctx: list[int]) -> bool:
        """Whether its condition holds at the last position of ``ctx``, given that the
        last token is in its cue."""
        raise NotImplementedError(self.name)

    def implies(self, a: RuleInfo, b: RuleInfo, on: frozenset[int]) -> bool:
        """Whether ``a`` (of this kind) firing at a token of ``on`` implies ``b`` fires."""
        return False

    # -- plan --------------------------------------------------------------------------
    def shared_components(self, rules: list[RuleInfo], an: Analysis) -> list[Component]:
        """Components several of its rules share (called once, with all its rules)."""
        return []

    def rule_components(self, r: RuleInfo, an: Analysis) -> list[Component]:
        """The components of one rule."""
        return []

    # -- constants ---------------------------------------------------------------------
    def weights(self, family: str, margin: float, n: int, max_len: int) -> dict[str, float]:
        """Its constructions' constants that other heads' leaks must be measured against
        (report label -> value); computed whether or not the spec has such a rule."""
        return {}

    def scores(self, family: str, margin: float, n: int, c_max: float) -> dict[str, float]:
        """Its softmax scores, chosen against the largest weight ``c_max`` (label -> value)."""
        return {}

    def tensor_boost(self, rng: float, extra: float, gap: float) -> tuple[float, float]:
        """Tensor family: its boost and the part of it that pays for an exponential lower
        rule, given the range ``rng`` it must beat and that part ``extra``."""
        return rng + extra + gap, extra

    def float32_limit(self) -> int | None:
        """The largest ``max_len`` at which its construction meets its bound in float32
        (None: every length); beyond it the model runs in float64."""
        return None

    # -- conditions --------------------------------------------------------------------
    def conditions(self, r: RuleInfo, an: Analysis) -> list[Condition]:
        """Where a model of it is not exact, in every family (the bound is stated on the
        contexts where they hold); each names this kind as its ``owner``."""
        return []

    def describe_condition(self, cond: Condition) -> str:
        """One line saying what one of its own conditions asks of a context."""
        raise NotImplementedError(self.name)

    def condition_holds(self, cond: Condition, an: Analysis, ctx: list[int]) -> bool:
        """Whether one of its own conditions holds at the last position of ``ctx``."""
        raise NotImplementedError(self.name)

    def condition_mask(self, cond: Condition, an: Analysis, tokens: np.ndarray):
        """``bool [B, T]``: the condition at every position of ``tokens`` (BOS in column
        0), or None to check each prefix with :meth:`condition_holds`."""
        return None

    def tensor_conditions(self, r: RuleInfo, an: Analysis, earliest: bool) -> list[Condition]:
        """Where a one-hot (``earliest``) or compact tensor model of it is not exact."""
        return []

    # -- compact compiler --------------------------------------------------------------
    def prev_sets(self, r: RuleInfo) -> list[frozenset[int]]:
        """Token sets its heads read from the compact prev code."""
        return []

    def compact_heads(self, rules: list[RuleInfo], an: Analysis) -> list[HeadPlan] | None:
        """Its compact heads (called once, with all its rules); None: it has no compact
        construction, and the compact compiler refuses the spec naming the first rule."""
        return None

    def compact_head(
        self, an: Analysis, codes: Codes, pf: PosFrame, hp: HeadPlan, m: float, boost
    ) -> tuple[HeadCircuit, Interference | None]:
        """The circuit of one of its compact heads, and the worst collision it reads."""
        raise NotImplementedError(self.name)

    def compact_read_row(self, r: RuleInfo, an: Analysis, gap: float) -> np.ndarray:
        """The compact unembedding row of ``read:r`` (a non-deterministic rule). [V]"""
        return log_probs(r.next, gap)

    def tensor_head(self, an: Analysis, codes: Codes, hp: HeadPlan, boost) -> HeadCircuit:
        """The circuit of one of its compact tensor-family heads."""
        raise NotImplementedError(self.name)

    # -- reports -----------------------------------------------------------------------
    def group(self, rule) -> str:
        """The group a rule of this kind is drawn in on the loss curves."""
        return self.name
