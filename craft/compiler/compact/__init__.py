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

import math
from dataclasses import dataclass

from craft.compiler.analysis import Analysis, analyse
from craft.compiler.compact import tensor as T
from craft.compiler.compact.budget import CompactConstants, constants, plan_heads
from craft.compiler.compact.build import (
    Need,
    build_heads,
    needed,
    score_scale,
    write_model,
)
from craft.compiler.compact.codes import Codes, build_codes
from craft.compiler.compact.common import HeadPlan, Interference
from craft.compiler.compact.shape import Shape
from craft.compiler.conditions import Condition, tensor_conditions
from craft.compiler.constants import MARGIN
from craft.compiler.primitives import HeadCircuit
from craft.models.components import ComponentKind, ComponentRecord
from craft.models.layout import Direction
from craft.models.transformer import Transformer
from specs.errors import CraftError
from specs.model import Spec

QUADRATIC = (Direction("pos", 1), Direction("pos", "u"), Direction("pos", "u2"))  # (1, u, u^2)


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
    interference: tuple[Interference, ...]
    conditions: tuple[Condition, ...] = ()  # tensor family: where the bound is guaranteed


def prev_sets(an: Analysis) -> list[frozenset[int]]:
    """Token sets the layer-1 heads read from the prev code (each rule's kind says which)."""
    return [s for r in an.rules for s in r.rule_kind.prev_sets(r)]


@dataclass(frozen=True)
class Prepared:
    """Everything decided before a shape is chosen (the construction does not depend on it)."""

    an: Analysis
    plan: tuple[HeadPlan, ...]
    codes: Codes
    constants: CompactConstants
    circuits: tuple[HeadCircuit, ...]
    interference: tuple[Interference, ...]
    need: Need
    conditions: tuple[Condition, ...]  # tensor family: where the bound is guaranteed


def prepare(spec: Spec, recode=None, family: str = "standard") -> Prepared:
    """Heads, codes, constants and circuits of ``spec`` (shape-independent).

    ``recode(codes) -> codes`` replaces the codes before anything reads them (tests plant
    collisions with it).
    """
    if family not in ("standard", "tensor"):
        raise CraftError(f"unknown family {family!r}", where="--family", fix="standard or tensor")
    an = analyse(spec)
    tensor = family == "tensor"
    plan = T.plan_tensor(an) if tensor else plan_heads(an)
    copies = any(r.rule_kind.copies for r in an.rules)
    pos = (T.position_dims(spec.max_len) if tensor else QUADRATIC) if plan else ()
    codes = build_codes(an, prev_sets(an), copies, positions=pos)
    codes = recode(codes) if recode is not None else codes
    if tensor:
        return _prepare_tensor(an, tuple(plan), codes)
    k = constants(an, codes, len(plan), lambda m: score_scale(an, codes, plan, m))
    circuits, interference = build_heads(an, codes, plan, k)
    need = needed(plan, circuits, codes)
    return Prepared(an, tuple(plan), codes, k, tuple(circuits), tuple(interference), need, ())


def _prepare_tensor(an: Analysis, plan: tuple[HeadPlan, ...], codes: Codes) -> Prepared:
    boost, bound, frange = T.tensor_bounds(an, len(plan))
    gap = MARGIN + math.log(len(an.spec.vocab))
    k = CompactConstants(MARGIN, gap, frange, 0.0, boost, bound, 0.0)
    circuits = [
        T.prev_token(codes, an.spec.max_len)
        if hp.kind == "previous-token"
        else an.info(hp.rules[0]).rule_kind.tensor_head(an, codes, hp, boost)
        for hp in plan
    ]
    need = needed(list(plan), circuits, codes)
    return Prepared(an, plan, codes, k, tuple(circuits), (), need, tensor_conditions(an))


def compile_compact(
    spec: Spec, shape: Shape, family: str = "standard", version: str = ""
) -> CompiledCompact:
    """Compile ``spec`` into an attention-only standard model of exactly ``shape``.

    Raises:
        CraftError: the tensor family, a rule the construction cannot build, or a shape it
            does not fit (the message names the smallest shape that fits).
    """
    p = prepare(spec, family=family)
    p.need.check(shape)
    model = write_model(p.an, p.codes, p.plan, p.circuits, p.constants, shape, family)
    out = CompiledCompact(
        model,
        p.an,
        p.codes,
        p.plan,
        p.circuits,
        p.constants,
        shape,
        p.interference,
        p.conditions,
    )
    model.meta = _meta(spec, out, version)
    return out


def n_params(spec: Spec, shape: Shape) -> int:
    """Parameters of an attention-only, bias-free standard model of ``shape``."""
    v, n, d = len(spec.vocab), spec.max_len + 1, shape.d_model
    return (v + 1) * d + n * d + shape.n_layers * shape.n_heads * 4 * d * shape.d_head + d * v


@dataclass(frozen=True)
class Candidate:
    """One shape ``--smallest`` tried: whether it fits (else why), its size and bound."""

    shape: Shape
    fits: bool
    why: str
    params: int
    bound: float | None

    def to_json(self) -> dict:
        s = self.shape
        return {
            "shape": f"{s.n_layers}x{s.n_heads}x{s.d_model}",
            "d_head": s.d_head,
            "fits": self.fits,
            "why": self.why,
            "params": self.params,
            "bound": self.bound,
        }


def smallest(spec: Spec, max_kl: float, family: str = "standard") -> tuple[Shape, list[Candidate]]:
    """The fitting shape with the fewest parameters, and every candidate searched.

    The construction's width, heads per layer and head width are fixed by the spec, so
    the search walks heads ``1..H`` and residual widths just below the need up to it;
    a candidate fits when :meth:`Need.check` accepts it. Its bound is the construction's
    (the same at every fitting shape); it must meet ``max_kl``.
    """
    p = prepare(spec, family=family)
    worst = max(p.constants.bound.values())
    best = p.need.smallest()
    layers, dh = best.n_layers, p.need.d_head
    widths = sorted({max(1, p.need.d_model - k) for k in (8, 4, 2, 1, 0)})
    curve = []
    for heads in range(1, best.n_heads + 1):
        for width in widths:
            shape = Shape(layers, heads, width, dh)
            try:
                p.need.check(shape)
                fits, why = True, ""
            except CraftError as e:
                fits, why = False, str(e).split(": ", 1)[-1].split("; fix:")[0]
            curve.append(
                Candidate(shape, fits, why, n_params(spec, shape), worst if fits else None)
            )
    fitting = [c for c in curve if c.fits]
    if worst > max_kl or not fitting:
        raise CraftError(
            f"the smallest construction guarantees max KL {worst:.3g} > --max-kl {max_kl:g}",
            where="--max-kl",
            fix=f"allow --max-kl {worst:.3g} or more, or compile without --smallest",
        )
    return min(fitting, key=lambda c: c.params).shape, curve


def _subspaces(vecs) -> tuple[Direction, ...]:
    """Directions named by some term, grouped to subspaces (``read``/``fire`` kept whole)."""
    out = set()
    for vec in vecs:
        for d in vec:
            out.add(d if d.name in ("read", "bos") else Direction(d.name))
    return tuple(sorted(out, key=str))


def records(plan: list[HeadPlan], circuits: list[HeadCircuit]) -> list[ComponentRecord]:
    """One typed record per head: its place, rules, and the subspaces it reads and writes."""
    out, slot = [], {}
    for hp, c in zip(plan, circuits, strict=True):
        head = slot.setdefault(hp.layer, 0)
        slot[hp.layer] += 1
        terms = c.qk + c.qk2
        reads = _subspaces([q for q, _ in terms] + [k for _, k in terms] + [r for r, _ in c.ov])
        writes = _subspaces([w for _, w in c.ov])
        out.append(
            ComponentRecord(
                hp.name, ComponentKind(hp.kind), hp.layer, "attn", head, hp.rules, reads, writes
            )
        )
    return out


def _meta(spec: Spec, compiled: CompiledCompact, version: str) -> dict:
    s, k = compiled.shape, compiled.constants
    return {
        "spec": spec.provenance(),
        "compiler": {
            "version": version,
            "family": compiled.model.cfg.family,
            "shape": f"{s.n_layers}x{s.n_heads}x{s.d_model}",
            "d_head": s.d_head,
            "attn_only": True,
        },
        "constants": dict(k.table()),
        "bounds": k.bound,
        "bound_scope": "contexts where the conditions hold"
        if compiled.conditions
        else "every context",
        "conditions": [c.describe() for c in compiled.conditions],
        "interference": [i.to_json() for i in compiled.interference],
        "codes": compiled.codes.features(),
        "components": [r.to_json() for r in records(list(compiled.heads), list(compiled.circuits))],
    }


__all__ = ["CompiledCompact", "Shape", "compile_compact", "smallest"]
