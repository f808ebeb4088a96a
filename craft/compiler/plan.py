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

Which components a rule needs is its kind's business (:mod:`craft.compiler.kinds`); this
stage only collects them, wires them by what they read and write, and places them.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from craft.compiler.analysis import Analysis
from craft.compiler.kinds import registry
from craft.compiler.kinds.base import Band, Component
from craft.compiler.kinds.shared import PrevToken, readouts
from craft.models.layout import BOS_DIR, ONE, Direction, Layout


@dataclass(frozen=True)
class Plan:
    analysis: Analysis
    graph: nx.DiGraph  # component -> component (writer -> reader)
    slots: dict[Component, int]  # sublayer index: attention 2l, MLP 2l+1
    layout: Layout
    n_layers: int

    def layer(self, slot: int) -> list[Component]:
        return [c for c, s in self.slots.items() if s == slot]


def components(an: Analysis) -> list[Component]:
    """The previous-token head (if a kind needs it), every kind's shared components (in
    registry order), every rule's own components (in rule order), then the readouts."""
    out: list[Component] = []
    if any(r.rule_kind.needs_prev for r in an.rules):
        out.append(PrevToken())
    for kind in registry():
        rules = [r for r in an.rules if r.rule_kind is kind]
        if rules:
            out += kind.shared_components(rules, an)
    for r in an.rules:
        out += r.rule_kind.rule_components(r, an)
    return list(dict.fromkeys(out + readouts(an)))  # shared product trees once


def reads(c: Component, an: Analysis) -> set[Direction]:
    return c.reads(an)


def writes(c: Component, an: Analysis) -> set[Direction]:
    return c.writes(an)


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
        if c.final:
            slots[c] = final_mlp
    n_layers = (max(slots.values(), default=-1) // 2) + 1
    return Plan(an, graph, slots, residual_layout(an, comps), n_layers)


def residual_layout(an: Analysis, comps: list[Component]) -> Layout:
    """bos, one, tok:*, pos:*, then by :class:`~craft.compiler.kinds.base.Band`: prev:*,
    fire:* (rules that fire, rule order), copy[r]:*, read:* (only what is used)."""
    vocab = an.spec.vocab.tokens
    dirs = [BOS_DIR, ONE] + [Direction("tok", t) for t in vocab]
    if any(c.sublayer == "attn" for c in comps):
        dirs += [Direction("pos", p) for p in range(an.spec.max_len + 1)]
    own = [(c.band, d) for c in comps for d in c.residual(an)]
    fire = [(Band.FIRE, Direction("fire", r.name)) for r in an.rules if r.rule_kind.fires]
    dirs += [d for _, d in sorted(own + fire, key=lambda bd: bd[0])]  # stable: keeps order
    return Layout(tuple(dirs))
