"""Stage 2: analysis -> plan. Which components the circuit needs and where they sit.

The plan is a networkx DiGraph whose nodes are frozen component dataclasses and whose
edges run from the component that writes a residual direction to every component that
reads it. Each component is placed in the earliest sublayer of its kind (attention
slots are even: ``2 * layer``; MLP slots odd) after everything it reads; readouts go to
the final MLP because they overwrite the token directions the direct path reads.

Why the toy language needs two layers in both families: induction reads the
previous-token head's output through K-composition (so layer 1 attention, after layer
0 attention), and the readout of the non-deterministic trigram (FUNC, NOUN) -> VERB_I
reads the trigram's fire feature, which the layer-0 MLP computes from the
previous-token head, so it sits in the layer-1 MLP. A spec with only bigrams compiles
to zero layers (the direct path), one with only deterministic skip-bigrams to one
attention layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import networkx as nx

from craft.compiler.analysis import Analysis, RuleInfo
from craft.models.components import ComponentKind, Sublayer
from craft.models.layout import BOS_DIR, ONE, Direction, Layout


@dataclass(frozen=True)
class PrevToken:
    """Layer-0 head copying ``x[t-1]`` into ``prev:*``."""

    kind: ClassVar[ComponentKind] = ComponentKind.PREVIOUS_TOKEN

    name: str = "prev-token"
    sublayer: Sublayer = "attn"


@dataclass(frozen=True)
class Detector:
    """One head detecting several skip-bigram rules with one window.

    Rules share a head when their cues are disjoint and their anchors are disjoint, so
    at most one rule's cue matches ``x[t]`` and each anchor token belongs to one rule.
    """

    kind: ClassVar[ComponentKind] = ComponentKind.SKIP_DETECTOR

    rules: tuple[str, ...]
    window: tuple[int, int]
    name: str = ""
    sublayer: Sublayer = "attn"


@dataclass(frozen=True)
class TrigramAnd:
    """MLP unit: ``fire:r = [x[t-1] in A] AND [x[t] in B]`` from ``prev:*`` and ``tok:*``."""

    kind: ClassVar[ComponentKind] = ComponentKind.TRIGRAM_AND

    rule: str
    name: str = ""
    sublayer: Sublayer = "mlp"


@dataclass(frozen=True)
class InductionHead:
    """Head attending from ``x[t]`` to the position after its earliest earlier occurrence."""

    kind: ClassVar[ComponentKind] = ComponentKind.INDUCTION

    rule: str
    gates: tuple[str, ...]
    name: str = ""
    sublayer: Sublayer = "attn"


@dataclass(frozen=True)
class Readout:
    """MLP units giving a non-deterministic rule its exact distribution.

    When the rule fires first they cancel the direct path (``-tok:v``) and the boosts of
    lower deterministic rules firing with it (``-fire:l``) and write ``read:r``.
    """

    kind: ClassVar[ComponentKind] = ComponentKind.READOUT

    rule: str
    gates: tuple[str, ...]
    cancels: tuple[str, ...]
    name: str = ""
    sublayer: Sublayer = "mlp"


Component = PrevToken | Detector | TrigramAnd | InductionHead | Readout


@dataclass(frozen=True)
class Plan:
    analysis: Analysis
    graph: nx.DiGraph  # component -> component (writer -> reader)
    slots: dict[Component, int]  # sublayer index: attention 2l, MLP 2l+1
    layout: Layout
    n_layers: int

    def layer(self, slot: int) -> list[Component]:
        return [c for c, s in self.slots.items() if s == slot]


def _named(c, name):
    object.__setattr__(c, "name", name)
    return c


def components(an: Analysis) -> list[Component]:
    out: list[Component] = []
    needs_prev = any(r.kind in ("trigram", "induction") for r in an.rules)
    if needs_prev:
        out.append(PrevToken())
    for i, group in enumerate(_detector_groups([r for r in an.rules if r.kind == "skip_bigram"])):
        out.append(_named(Detector(tuple(r.name for r in group), group[0].window), f"skip{i}"))
    for r in an.rules:
        if r.kind == "trigram":
            out.append(_named(TrigramAnd(r.name), f"and:{r.name}"))
        elif r.kind == "induction":
            gates = tuple(g.name for g in an.gates(r))
            out.append(_named(InductionHead(r.name, gates), f"induction:{r.name}"))
    for r in an.rules:
        if not r.deterministic:
            gates = tuple(g.name for g in an.gates(r))
            cancels = tuple(
                x.name for x in an.lower_cofiring(r) if x.deterministic and x.kind != "induction"
            )
            out.append(_named(Readout(r.name, gates, cancels), f"readout:{r.name}"))
    return out


def _detector_groups(rules: list[RuleInfo]) -> list[list[RuleInfo]]:
    groups: list[list[RuleInfo]] = []
    for r in rules:
        for g in groups:
            if g[0].window == r.window and all(
                not (x.cue & r.cue) and not (x.anchor & r.anchor) for x in g
            ):
                g.append(r)
                break
        else:
            groups.append([r])
    return groups


def reads(c: Component, an: Analysis) -> set[Direction]:
    fire = lambda names: {Direction("fire", n) for n in names}  # noqa: E731
    if isinstance(c, TrigramAnd):
        return {Direction("prev", None)}
    if isinstance(c, InductionHead):
        return {Direction("prev", None)} | fire(c.gates)
    if isinstance(c, Readout):
        return fire((c.rule, *c.gates, *c.cancels))
    return set()


def writes(c: Component, an: Analysis) -> set[Direction]:
    if isinstance(c, PrevToken):
        return {Direction("prev", None)}
    if isinstance(c, Detector):
        return {Direction("fire", n) for n in c.rules}
    if isinstance(c, TrigramAnd):
        return {Direction("fire", c.rule)}
    if isinstance(c, InductionHead):
        return {Direction(f"copy[{c.rule}]", None)}
    return {Direction("read", c.rule)}


def plan(an: Analysis) -> Plan:
    comps = components(an)
    graph = nx.DiGraph()
    graph.add_nodes_from(comps)
    for a in comps:
        for b in comps:
            if a is not b and writes(a, an) & reads(b, an):
                graph.add_edge(a, b)
    slots: dict[Component, int] = {}
    for c in nx.topological_sort(graph):
        earliest = max((slots[p] + 1 for p in graph.predecessors(c)), default=0)
        parity = 0 if c.sublayer == "attn" else 1
        slots[c] = earliest + ((earliest - parity) % 2)
    last = max(slots.values(), default=-1)
    final_mlp = last if last % 2 else last + 1
    for c in comps:
        if isinstance(c, Readout):
            slots[c] = final_mlp
    n_layers = (max(slots.values(), default=-1) // 2) + 1
    return Plan(an, graph, slots, residual_layout(an, comps), n_layers)


def residual_layout(an: Analysis, comps: list[Component]) -> Layout:
    """bos, one, tok:*, pos:*, prev:*, fire:*, copy[r]:*, read:* (only what is used)."""
    vocab = an.spec.vocab.tokens
    dirs = [BOS_DIR, ONE] + [Direction("tok", t) for t in vocab]
    if any(c.sublayer == "attn" for c in comps):
        dirs += [Direction("pos", p) for p in range(an.spec.max_len + 1)]
    if any(isinstance(c, PrevToken) for c in comps):
        dirs += [Direction("prev", t) for t in vocab]
    fired = [r.name for r in an.rules if r.kind != "induction"]
    dirs += [Direction("fire", n) for n in fired]
    for c in comps:
        if isinstance(c, InductionHead):
            dirs += [Direction(f"copy[{c.rule}]", t) for t in vocab]
    dirs += [Direction("read", c.rule) for c in comps if isinstance(c, Readout)]
    return Layout(tuple(dirs))
