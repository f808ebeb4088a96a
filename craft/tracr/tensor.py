"""RASP -> tensor family: the fragment a polynomial network computes exactly.

Built from Tracr's own graph (expressions and inferred value sets: Tracr's
``rasp_to_graph`` and ``basis_inference`` stages), never from Tracr's MLP/attention
weights (those use softmax and ReLU). The residual holds the same categorical one-hot
spaces Tracr uses (``tokens:*``, ``indices:*``, ``one``, one direction per value of each
SOp), less the directions nothing reads, so :class:`TracrModel` decodes the same way.

The fragment (everything else is refused with a CraftError naming the operation):

* **categorical Map** ``y = f(x)``: one bilinear MLP unit per output value ``o``:
  ``L = R = sum_{v: f(v)=o} e_{x:v}``, ``D = e_{y:o}``. For a one-hot (or zero) ``x``,
  ``(L.x)(R.x) = [f(x)=o]^2 = [f(x)=o]``, so the MLP writes ``e_{f(x)}`` exactly.
* **categorical SequenceMap** ``y = g(x, z)``: one unit per pair (value ``v`` of the
  smaller input, output ``o``): ``L = e_{x:v}``, ``R = sum_{w: g(v,w)=o} e_{z:w}``,
  ``D = e_{y:o}``; ``(L.x)(R.z) = [x=v][g(v,z)=o]``, summed over ``v`` is ``[g(x,z)=o]``.
  (When ``x`` and ``z`` are the same SOp the product is ``[x=v][g(v,v)=o]``: still exact.)
* **categorical Aggregate** whose selector ``Select(keys, queries, p)`` provably selects
  at most one position: one bilinear head with factor 1 the predicate table
  (``q1_t . k1_s = E p(k_s, q_t)``, one-hot query against the table row of the key) and
  factor 2 the constant ``one`` direction (``q2 . k2 = E``), so
  ``pattern[t,s] = E p E / E^2 = p(k_s, q_t)`` exactly; ``v`` copies the aggregated SOp's
  one-hot, ``W_O`` maps it to the output's directions. With at most one selected ``s``,
  ``z_t`` is that position's one-hot, or zero when none is selected (RASP's ``None``).
  At most one is proved statically: either no (key, query) value pair satisfies ``p``,
  or the keys are distinct at every position (``indices``, or a chain of categorical
  Maps that are injective on their value sets over ``indices``) and every query value
  matches at most one key value. ``Select(indices, indices, EQ)`` and shift-by-k pass;
  comparisons such as ``LT`` do not.

BOS (position 0) carries no index and no ``tokens`` value a table reads, so every SOp is
zero there and no head selects it (Tracr needs BOS as softmax's default; we do not).

Refused: numerical SOps (Tracr's numerical MLPs discretise with ReLU; numerical
Aggregate is a softmax mean), Aggregates whose selector may select several positions
(softmax averaging), SelectorWidth (an unnormalised attention sum gives the count ``n``
as a number exactly, but the categorical one-hot ``[n=k]`` is a degree-``max_len``
polynomial in ``n``, i.e. ``ceil(log2 max_len)`` extra bilinear MLPs; not implemented),
and any other expression (ConstantSOp, Full, composite selectors).

Layers: each operation goes to its earliest slot (attention at even, MLP at odd
sublayer indices) after everything it reads, so depth is never more than Tracr's.

Shape glossary: D residual width, E d_head, M MLP hidden width, V input tokens,
P positions, O output columns.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from craft.models import Layout, ModelConfig, Transformer
from craft.tracr._deps import require_tracr, tracr_version
from craft.tracr.model import TracrModel, direction, jsonable
from specs.errors import CraftError


@dataclass
class _Head:
    """One bilinear head before the ``E`` scaling: ``w_k1`` and ``w_q2`` get ``* E``."""

    w_q1: np.ndarray  # [D, e]
    w_k1: np.ndarray
    w_q2: np.ndarray  # [D, 1]
    w_k2: np.ndarray
    w_v: np.ndarray  # [D, e]
    w_o: np.ndarray  # [e, D]
    label: str = ""

    @property
    def width(self) -> int:
        return max(self.w_q1.shape[1], self.w_v.shape[1])

    def reads(self) -> list[np.ndarray]:
        return [self.w_q1, self.w_k1, self.w_q2, self.w_k2, self.w_v]


@dataclass
class _Mlp:
    """Bilinear MLP units ``w_d((x w_l) * (x w_r))``; several operations concatenate."""

    w_l: np.ndarray  # [D, M]
    w_r: np.ndarray
    w_d: np.ndarray  # [M, D]
    labels: list[str] = field(default_factory=list)


def _refuse(expr: Any, program: Any, needs: str, why: str) -> CraftError:
    kind = type(expr).__name__
    if isinstance(expr, require_tracr().rasp.SOp) and require_tracr().rasp.is_numerical(expr):
        kind = f"numerical {kind}"
    return CraftError(
        f"{kind} {expr.label!r} needs {needs} ({why}); the tensor family computes only "
        "categorical Map, SequenceMap and at-most-one Aggregate exactly",
        where=f"program {program.label!r}",
        fix="use --family standard (family='standard') for this program",
    )


def _position_injective(expr: Any, graph: Any, rasp: Any, nodes: Any) -> bool:
    """True when ``expr`` takes a different value at every position (statically)."""
    while True:
        if expr.label == rasp.indices.label:
            return True
        if not isinstance(expr, rasp.Map) or not rasp.is_categorical(expr):
            return False
        inner = graph.nodes[expr.inner.label][nodes.VALUE_SET]
        if len({expr.f(v) for v in inner}) != len(inner):
            return False
        expr = expr.inner


def _at_most_one(select: Any, graph: Any, rasp: Any, nodes: Any) -> tuple[bool, str]:
    keys = sorted(graph.nodes[select.keys.label][nodes.VALUE_SET], key=repr)
    queries = sorted(graph.nodes[select.queries.label][nodes.VALUE_SET], key=repr)
    matches = [sum(bool(select.predicate(k, q)) for k in keys) for q in queries]
    if not any(matches):
        return True, ""
    if not _position_injective(select.keys, graph, rasp, nodes):
        return False, (
            f"its keys {select.keys.label!r} may repeat across positions, so the selector "
            "may pick several positions, which softmax averages"
        )
    if max(matches) > 1:
        q = queries[int(np.argmax(matches))]
        return False, (
            f"query value {q!r} selects {max(matches)} key values, so the selector may "
            "pick several positions, which softmax averages"
        )
    return True, ""


def _check_fragment(program: Any, graph: Any, order: list) -> None:
    tracr = require_tracr()
    rasp, nodes = tracr.rasp, tracr.nodes
    for label in order:
        expr = graph.nodes[label][nodes.EXPR]
        if label in (rasp.tokens.label, rasp.indices.label):
            continue
        if isinstance(expr, rasp.Select):
            continue
        if isinstance(expr, rasp.SelectorWidth):
            raise _refuse(
                expr,
                program,
                "softmax and ReLU",
                "Tracr counts with BOS-normalised attention and a discretising MLP",
            )
        if isinstance(expr, rasp.SOp) and rasp.is_numerical(expr):
            needs = "softmax" if isinstance(expr, rasp.Aggregate) else "ReLU"
            raise _refuse(expr, program, needs, "numerical SOps are not one-hot")
        if isinstance(expr, rasp.Map | rasp.SequenceMap):
            children = expr.children
            bad = [c for c in children if rasp.is_numerical(c)]
            if bad:
                raise _refuse(expr, program, "ReLU", f"it reads numerical {bad[0].label!r}")
            continue
        if isinstance(expr, rasp.Aggregate):
            if not isinstance(expr.selector, rasp.Select):
                raise _refuse(expr, program, "softmax", "its selector is not a plain Select")
            if rasp.is_numerical(expr.sop):
                raise _refuse(expr, program, "softmax", "it averages a numerical SOp")
            ok, why = _at_most_one(expr.selector, graph, rasp, nodes)
            if not ok:
                raise _refuse(expr, program, "softmax", why)
            continue
        raise _refuse(expr, program, "softmax or ReLU", "not in the tensor fragment")


def _schedule(graph: Any, order: list, rasp: Any, nodes: Any) -> dict[str, int]:
    """Earliest sublayer slot of each operation (attention even, MLP odd)."""
    done: dict[str, int] = {}  # label -> slot after which its value is in the residual

    def ready(expr: Any) -> int:
        if isinstance(expr, rasp.Select):
            return max(ready(expr.keys), ready(expr.queries))
        return done.get(expr.label, -1)

    slots: dict[str, int] = {}
    for label in order:
        expr = graph.nodes[label][nodes.EXPR]
        if isinstance(expr, rasp.Map | rasp.SequenceMap | rasp.Aggregate):
            r = max(ready(c) for c in expr.children)
            want = 0 if isinstance(expr, rasp.Aggregate) else 1
            slot = r + 1 if (r + 1) % 2 == want else r + 2
            slots[label] = done[label] = slot
    return slots


def _unit(index: dict, dirs: Iterable[Any]) -> np.ndarray:
    v = np.zeros(len(index))
    for d in dirs:
        v[index[d]] = 1.0
    return v


def _map_units(expr: Any, graph: Any, index: dict, bases: Any, nodes: Any) -> _Mlp:
    xs = sorted(graph.nodes[expr.inner.label][nodes.VALUE_SET], key=repr)
    groups: dict[Any, list] = {}
    for v in xs:
        out = bases.BasisDirection(expr.label, expr.f(v))
        if out in index:
            groups.setdefault(out, []).append(bases.BasisDirection(expr.inner.label, v))
    outs = sorted(groups, key=lambda d: repr(d.value))
    w_l = np.stack([_unit(index, groups[o]) for o in outs], axis=1) if outs else None
    w_d = np.stack([_unit(index, [o]) for o in outs]) if outs else None
    d = len(index)
    if w_l is None:
        return _Mlp(np.zeros((d, 0)), np.zeros((d, 0)), np.zeros((0, d)), [expr.label])
    return _Mlp(w_l, w_l.copy(), w_d, [expr.label])


def _sequencemap_units(expr: Any, graph: Any, index: dict, bases: Any, nodes: Any) -> _Mlp:
    fst, snd = expr.fst.label, expr.snd.label
    xs = sorted(graph.nodes[fst][nodes.VALUE_SET], key=repr)
    ys = sorted(graph.nodes[snd][nodes.VALUE_SET], key=repr)
    table = {(v, w): expr.f(v, w) for v in xs for w in ys}

    def units(outer: str, vs: list, inner: str, ws: list, swap: bool) -> list:
        out = []
        for v in vs:
            groups: dict[Any, list] = {}
            for w in ws:
                o = bases.BasisDirection(expr.label, table[(w, v) if swap else (v, w)])
                if o in index:
                    groups.setdefault(o, []).append(bases.BasisDirection(inner, w))
            for o in sorted(groups, key=lambda d: repr(d.value)):
                out.append((bases.BasisDirection(outer, v), groups[o], o))
        return out

    a = units(fst, xs, snd, ys, swap=False)
    b = units(snd, ys, fst, xs, swap=True)
    chosen = a if len(a) <= len(b) else b
    d = len(index)
    if not chosen:
        return _Mlp(np.zeros((d, 0)), np.zeros((d, 0)), np.zeros((0, d)), [expr.label])
    w_l = np.stack([_unit(index, [u[0]]) for u in chosen], axis=1)
    w_r = np.stack([_unit(index, u[1]) for u in chosen], axis=1)
    w_d = np.stack([_unit(index, [u[2]]) for u in chosen])
    return _Mlp(w_l, w_r, w_d, [expr.label])


def _aggregate_head(expr: Any, graph: Any, index: dict, bases: Any, nodes: Any) -> _Head:
    sel = expr.selector
    keys = sorted(graph.nodes[sel.keys.label][nodes.VALUE_SET], key=repr)
    queries = sorted(graph.nodes[sel.queries.label][nodes.VALUE_SET], key=repr)
    table = np.array([[float(bool(sel.predicate(k, q))) for k in keys] for q in queries])
    p_q = np.stack(
        [_unit(index, [bases.BasisDirection(sel.queries.label, q)]) for q in queries], axis=1
    )
    p_k = np.stack([_unit(index, [bases.BasisDirection(sel.keys.label, k)]) for k in keys], axis=1)
    if len(queries) <= len(keys):
        w_q1, w_k1 = p_q, p_k @ table.T  # k1_s[i] = p(key_s, q_i)
    else:
        w_q1, w_k1 = p_q @ table, p_k  # q1_t[j] = p(k_j, query_t)
    one = _unit(index, [bases.BasisDirection("one")])[:, None]
    values = sorted(graph.nodes[expr.sop.label][nodes.VALUE_SET], key=repr)
    w_v, rows = [], []
    for v in values:
        out = bases.BasisDirection(expr.label, v)
        if out in index:
            w_v.append(_unit(index, [bases.BasisDirection(expr.sop.label, v)]))
            rows.append(_unit(index, [out]))
    d = len(index)
    w_v_arr = np.stack(w_v, axis=1) if w_v else np.zeros((d, 0))
    w_o = np.stack(rows) if rows else np.zeros((0, d))
    return _Head(w_q1, w_k1, one, one.copy(), w_v_arr, w_o, expr.label)


def _concat(mlps: list[_Mlp]) -> _Mlp:
    return _Mlp(
        np.concatenate([m.w_l for m in mlps], axis=1),
        np.concatenate([m.w_r for m in mlps], axis=1),
        np.concatenate([m.w_d for m in mlps], axis=0),
        [label for m in mlps for label in m.labels],
    )


def _kept_directions(n: int, layers: list, w_u_rows: list[int]) -> np.ndarray:
    """``[D]`` mask: the directions some weight reads (queries, keys, values, MLP inputs)
    or the unembedding reads. Everything else is written, if at all, for nobody."""
    read = np.zeros(n, dtype=bool)
    read[w_u_rows] = True
    for heads, mlp in layers:
        for h in heads:
            for w in h.reads():
                read |= np.any(w != 0, axis=1)
        if mlp is not None:
            read |= np.any(mlp.w_l != 0, axis=1) | np.any(mlp.w_r != 0, axis=1)
    return read


def _put(param: torch.Tensor, value: np.ndarray) -> None:
    corner = tuple(slice(0, s) for s in value.shape)
    param.data[corner] = torch.as_tensor(value, dtype=param.dtype)


def from_rasp_tensor(
    program: Any,
    vocab: Iterable[Any],
    max_len: int,
    *,
    compiler_bos: str = "BOS",
    compiler_pad: str = "compiler_pad",
    causal: bool = False,
) -> TracrModel:
    """Compile a RASP program in the tensor fragment into a tensor-family model.

    Same arguments as :func:`craft.tracr.from_rasp` (no ``mlp_exactness``: nothing is
    discretised). Raises a CraftError naming the first operation outside the fragment.
    """
    from craft.tracr.fast import check_arguments, graph_with_value_sets

    vocab = check_arguments(vocab, max_len, compiler_bos, compiler_pad)
    start = time.perf_counter()
    tracr = require_tracr()
    rasp, bases, nodes = tracr.rasp, tracr.bases, tracr.nodes
    graph, sink, _ = graph_with_value_sets(program, vocab, max_len)
    import networkx as nx

    order = list(nx.topological_sort(graph))
    _check_fragment(program, graph, order)
    slots = _schedule(graph, order, rasp, nodes)

    token_values = graph.nodes[rasp.tokens.label][nodes.VALUE_SET] | {compiler_bos, compiler_pad}
    tokens_space = bases.VectorSpaceWithBasis.from_values(rasp.tokens.label, token_values)
    indices_space = bases.VectorSpaceWithBasis.from_values(rasp.indices.label, range(max_len))
    output_space = bases.VectorSpaceWithBasis(sink[nodes.OUTPUT_BASIS])
    spaces = [tokens_space, indices_space, output_space]
    spaces += [bases.VectorSpaceWithBasis(graph.nodes[lb][nodes.OUTPUT_BASIS]) for lb in slots]
    spaces.append(bases.VectorSpaceWithBasis([bases.BasisDirection("one")]))
    residual = list(bases.join_vector_spaces(*spaces).basis)
    index = {d: i for i, d in enumerate(residual)}

    n_layers = max(slots.values(), default=0) // 2 + 1
    layers: list[tuple[list[_Head], _Mlp | None]] = []
    for layer in range(n_layers):
        heads, mlps = [], []
        for label, slot in slots.items():
            expr = graph.nodes[label][nodes.EXPR]
            if slot == 2 * layer:
                heads.append(_aggregate_head(expr, graph, index, bases, nodes))
            elif slot == 2 * layer + 1:
                build = _map_units if isinstance(expr, rasp.Map) else _sequencemap_units
                mlps.append(build(expr, graph, index, bases, nodes))
        layers.append((heads, _concat(mlps) if mlps else None))

    w_e = np.zeros((len(tokens_space.basis), len(residual)))
    for i, d in enumerate(tokens_space.basis):
        w_e[i, index[d]] = 1.0
    w_e[:, index[bases.BasisDirection("one")]] = 1.0
    w_pos = np.zeros((max_len + 1, len(residual)))
    for t, d in enumerate(indices_space.basis):
        w_pos[t + 1, index[d]] = 1.0
    out_rows = [index[d] for d in output_space.basis]

    keep = _kept_directions(len(residual), layers, out_rows)
    for heads, mlp in layers:
        for h in heads:
            h.w_q1, h.w_k1, h.w_q2, h.w_k2, h.w_v = (w[keep] for w in h.reads())
            h.w_o = h.w_o[:, keep]
        if mlp is not None:
            mlp.w_l, mlp.w_r, mlp.w_d = mlp.w_l[keep], mlp.w_r[keep], mlp.w_d[:, keep]
    kept = [d for d, k in zip(residual, keep, strict=True) if k]
    dropped = [
        str(direction(d.name, d.value)) for d, k in zip(residual, keep, strict=True) if not k
    ]
    w_e, w_pos = w_e[:, keep], w_pos[:, keep]
    new_index = {d: i for i, d in enumerate(kept)}

    all_heads = [h for hs, _ in layers for h in hs]
    e = max([h.width for h in all_heads], default=1) or 1
    cfg = ModelConfig(
        family="tensor",
        n_layers=n_layers,
        n_heads=max([len(hs) for hs, _ in layers], default=1) or 1,
        d_model=len(kept),
        d_head=e,
        d_mlp=max([m.w_l.shape[1] for _, m in layers if m is not None], default=0),
        n_vocab=len(tokens_space.basis),
        n_out=len(output_space.basis),
        n_ctx=max_len + 1,
        causal=causal,
        positions="learned",
        bias=False,
    )
    model = Transformer(cfg)
    with torch.no_grad():
        _put(model.embed.W_E, w_e)
        _put(model.pos_embed.W_pos, w_pos)
        for block, (heads, mlp) in zip(model.blocks, layers, strict=True):
            for i, h in enumerate(heads):
                attn = block.attn
                _put(attn.W_Q1[i], h.w_q1)
                _put(attn.W_K1[i], h.w_k1 * e)
                _put(attn.W_Q2[i], h.w_q2 * e)
                _put(attn.W_K2[i], h.w_k2)
                _put(attn.W_V[i], h.w_v)
                _put(attn.W_O[i], h.w_o)
            if mlp is not None and block.mlp is not None:
                _put(block.mlp.W_L, mlp.w_l)
                _put(block.mlp.W_R, mlp.w_r)
                _put(block.mlp.W_D, mlp.w_d)
        for j, d in enumerate(output_space.basis):
            model.unembed.W_U[new_index[d], j] = 1.0
    report = {
        "family": "tensor",
        "operations": {
            lb: f"L{s // 2}.{'attn' if s % 2 == 0 else 'mlp'}" for lb, s in slots.items()
        },
        "pruned_directions": dropped,
        "removed_noop_sublayers": [],
        "zero_filled_slots": [
            f"L{i}.{kind}"
            for i, (heads, mlp) in enumerate(layers)
            for kind, empty in (("attn", not heads), ("mlp", mlp is None))
            if empty and (kind == "attn" or cfg.d_mlp)
        ],
    }
    model.layout = Layout(tuple(direction(d.name, d.value) for d in kept))
    model.meta = {
        "source": "tracr",
        "tracr_version": tracr_version(),
        "path": "fast",
        "family": "tensor",
        "program": program.label,
        "vocab": sorted((jsonable(v) for v in vocab), key=repr),
        "max_len": max_len,
        "causal": causal,
        "compiler_bos": compiler_bos,
        "compiler_pad": compiler_pad,
        "input_tokens": [jsonable(d.value) for d in tokens_space.basis],
        "output_encoding": "categorical",
        "output_space": [str(direction(d.name, d.value)) for d in output_space.basis],
        "output_values": [jsonable(d.value) for d in output_space.basis],
        "conversion": report,
    }
    out = TracrModel(
        model=model.eval(),
        tokens=tuple(d.value for d in tokens_space.basis),
        output_values=tuple(d.value for d in output_space.basis),
        categorical=True,
        bos=compiler_bos,
        report=report,
    )
    out.report["compile_seconds"] = time.perf_counter() - start
    return out
