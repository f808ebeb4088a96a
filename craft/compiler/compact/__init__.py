"""Compile under a size budget: ``spec -> codes -> heads -> constants -> weights``.

``craft compile SPEC --shape LxHxD --attn-only`` builds an attention-only standard model
of exactly that shape (unused residual dimensions and heads are zero). Token, position,
previous-token and output features share dimensions through codes
(:mod:`craft.compiler.compact.codes`), every head is one of five constructions
(:mod:`craft.compiler.compact.heads`), and every constant and bound comes from
:mod:`craft.compiler.compact.budget`. A budget the construction does not fit is a
CraftError naming what does not fit and the smallest shape that would.
"""

from __future__ import annotations

from dataclasses import dataclass

from craft.compiler.analysis import Analysis, analyse
from craft.compiler.compact.budget import CompactConstants, HeadPlan, constants, plan_heads
from craft.compiler.compact.build import build_heads, needed, score_scale, write_model
from craft.compiler.compact.codes import Codes, build_codes
from craft.compiler.compact.shape import Shape
from craft.compiler.primitives import HeadCircuit
from craft.models.transformer import Transformer
from specs.errors import CraftError
from specs.model import Spec


@dataclass(frozen=True)
class CompiledCompact:
    """A compact model with the codes, heads and constants the compiler chose."""

    model: Transformer
    analysis: Analysis
    codes: Codes
    heads: tuple[HeadPlan, ...]
    circuits: tuple[HeadCircuit, ...]
    constants: CompactConstants
    shape: Shape


def prev_sets(an: Analysis) -> list[frozenset[int]]:
    """Token sets the layer-1 heads read from the prev code."""
    out = [r.anchor for r in an.rules if r.kind == "trigram"]
    for r in (r for r in an.rules if r.kind == "induction"):
        out += [frozenset({v}) for v in sorted(r.cue)]
    return out


def compile_compact(spec: Spec, shape: Shape, family: str = "standard") -> CompiledCompact:
    if family != "standard":
        raise CraftError(
            f"--shape builds the standard family only (got {family!r})",
            where="--family",
            fix="use --family standard with --shape, or drop --shape for the tensor family",
        )
    an = analyse(spec)
    plan = plan_heads(an)
    codes = build_codes(an, prev_sets(an), any(r.kind == "induction" for r in an.rules))
    k = constants(an, codes, len(plan), lambda m: score_scale(an, codes, plan, m))
    circuits = build_heads(an, codes, plan, k)
    needed(plan, circuits, codes).check(shape)
    model = write_model(an, codes, plan, circuits, k, shape)
    return CompiledCompact(model, an, codes, tuple(plan), tuple(circuits), k, shape)


__all__ = ["CompiledCompact", "Shape", "compile_compact"]
