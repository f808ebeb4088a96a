"""Stage 4a: components -> circuits. Each primitive as named-direction bilinear forms.

A circuit says, in residual directions only, what a head or MLP unit computes; the
assembler turns it into weight matrices. Notation: ``x`` the residual at the query
position ``t``, ``y`` at a key position ``s``; ``[P]`` is 1 if P holds else 0.

* A head term ``(q, k)`` contributes ``(q . x)(k . y)`` to the score (standard) or to
  one of the two bilinear factors (tensor); an OV term ``(r, w)`` writes ``(r . y) w``.
* A ReLU unit computes ``relu(inp . x) out``; a bilinear unit ``(left . x)(right . x) out``.
  The constant comes from the ``one`` direction (1 at every non-BOS position), so every
  unit is exactly 0 at BOS and no biases are needed.

Each component builds its own circuits (:meth:`craft.compiler.kinds.base.Component.circuits`),
next to the rule kind it belongs to (:mod:`craft.compiler.kinds`), with its derivation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from craft.models.layout import Direction

if TYPE_CHECKING:
    from craft.compiler.analysis import Analysis
    from craft.compiler.constants import Constants
    from craft.compiler.kinds.base import Component

Vec = dict[Direction, float]


@dataclass(frozen=True, eq=False)
class HeadCircuit:
    name: str
    qk: list[tuple[Vec, Vec]]  # standard: the score; tensor: factor 1
    ov: list[tuple[Vec, Vec]]
    qk2: list[tuple[Vec, Vec]] = field(default_factory=list)  # tensor: factor 2


@dataclass(frozen=True, eq=False)
class UnitCircuit:
    name: str
    inp: Vec  # standard: pre-activation; tensor: left factor
    out: Vec
    right: Vec | None = None  # tensor: right factor


def tok(v: int, an: Analysis) -> Direction:
    return Direction("tok", an.spec.vocab.tokens[v])


def ind(dirs, w: float = 1.0) -> Vec:
    """``w`` times the indicator that the residual holds one of ``dirs``."""
    return dict.fromkeys(dirs, w)


def circuits(c: Component, an: Analysis, k: Constants, family: str):
    """The HeadCircuit or UnitCircuits of one component in one family."""
    return c.circuits(an, k, family == "tensor")
