"""The compiler: ``spec -> analysis -> plan -> constants -> circuits -> model``.

Each stage is a pure function in its own module; :func:`compile_spec` is the driver.
What is particular to a rule kind lives in :mod:`craft.compiler.kinds`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from craft.compiler.analysis import Analysis, analyse
from craft.compiler.assemble import assemble
from craft.compiler.conditions import Condition, all_hold, conditions
from craft.compiler.constants import Constants, derive, float_limit
from craft.compiler.plan import Plan, plan, reads, writes
from craft.models.components import ComponentKind, ComponentRecord
from craft.models.transformer import Transformer
from specs.errors import CraftError
from specs.model import Spec

COMPILER_VERSION = "0.1.0"
FAMILIES = ("standard", "tensor")


@dataclass(frozen=True)
class Compiled:
    """A compiled model with everything the compiler decided about it."""

    model: Transformer
    plan: Plan
    constants: Constants
    conditions: tuple[Condition, ...]  # where the bound is guaranteed (empty: everywhere)
    placed: list  # (slot, circuit(s)) per component, for reports

    @property
    def analysis(self) -> Analysis:
        return self.plan.analysis


def compile_spec(
    spec: Spec, family: str = "standard", dtype: str | None = None, layers: int | None = None
) -> Compiled:
    """Compile ``spec`` into a model of ``family``.

    ``dtype``: None picks float32 unless the model's logits outgrow it (tensor-family
    induction at long ``max_len``: float64, recorded in the file, which ``load_model``
    restores); ``"float32"`` beyond that limit is a CraftError naming it.

    ``layers``: the most layers the model may have (None: as many as exactness needs).
    The tensor family's exact readouts take extra layers
    (:func:`~craft.compiler.kinds.shared.exact_readouts`); when they do not fit, its
    readouts fall back to one layer and the model states the conditions that brings.
    A model that cannot fit even then is a CraftError.
    """
    if family not in FAMILIES:
        raise CraftError(
            f"unknown family {family!r}", where="--family", fix="use standard or tensor"
        )
    p = _plan(analyse(spec), family, layers)
    an = p.analysis
    k = derive(an, family, len(p.slots), dtype)
    model, placed = assemble(p, k, family)
    conds = conditions(an, family, earliest=True)
    model.meta = {
        "spec": spec.provenance(),
        "compiler": {"version": COMPILER_VERSION, "family": family},
        "constants": dict(k.table()),
        "bounds": k.bound,
        "conditions": [c.describe() for c in conds],
        "bound_scope": "contexts where the conditions hold" if conds else "every context",
        "components": _components(p),
        "dtype": k.dtype,
        "float32_limit": float_limit(an, family),
        "products": _products(p),
    }
    return Compiled(model, p, k, conds, placed)


def _plan(an: Analysis, family: str, layers: int | None) -> Plan:
    """The plan; in the tensor family with exact readouts when ``layers`` allows them."""
    if family == "tensor":
        exact = plan(dataclasses.replace(an, exact_tensor=True))
        if layers is None or exact.n_layers <= layers:
            return exact
    p = plan(an)
    if layers is not None and p.n_layers > layers:
        raise CraftError(
            f"this spec needs {p.n_layers} layers in the {family} family, more than "
            f"--layers {layers}",
            where="--layers",
            fix=f"allow at least {p.n_layers} layers",
        )
    return p


def _products(p: Plan) -> list[str]:
    """One line per product tree of an exact tensor model: what it computes, and where."""
    trees: dict[str, list[int]] = {}
    for c, slot in p.slots.items():
        if c.kind == ComponentKind.PRODUCT:
            label = c.name.split(":", 1)[1].rsplit(":", 1)[0]
            trees.setdefault(label, []).append(slot // 2)
    out = []
    for label, layers in trees.items():
        what, rule = label.split(":", 1)
        why = {
            "none": f"[{rule} does not fire]: its anchor count c is not an OR; "
            "prod_k (1 - c/k) is exactly [c = 0] (degree = window)",
            "read": f"the readout of {rule}: [{rule} fires] x [no gate fires] (degree > 2)",
            "ungated": f"the head of {rule}: [no gate fires] (gates fire together or count)",
        }[what]
        span = f"MLP {min(layers)}" + (f"-{max(layers)}" if max(layers) > min(layers) else "")
        out.append(f"{why}; {len(layers)} bilinear level(s), {span}")
    return out


def _components(p: Plan) -> list[dict]:
    """One :class:`ComponentRecord` per component, as JSON, in layer then head order.

    A component's head index is its place among the heads of its layer; its reads and
    writes are the plan's (:func:`craft.compiler.plan.reads`/``writes``), sorted.
    """
    records = []
    for slot in sorted(set(p.slots.values())):
        for index, c in enumerate(p.layer(slot)):
            records.append(
                ComponentRecord(
                    name=c.name,
                    kind=c.kind,
                    layer=slot // 2,
                    sublayer=c.sublayer,
                    head=index if c.sublayer == "attn" else None,
                    rules=c.rule_names(),
                    reads=tuple(sorted(reads(c, p.analysis), key=str)),
                    writes=tuple(sorted(writes(c, p.analysis), key=str)),
                )
            )
    return [r.to_json() for r in records]


__all__ = ["Compiled", "Condition", "all_hold", "analyse", "compile_spec", "COMPILER_VERSION"]
