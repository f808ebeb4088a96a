"""The fast path: RASP -> Tracr's graph and craft stages -> Network, no Haiku assembly.

Tracr's ``compile_rasp_to_model`` runs five stages; the first four (graph extraction,
value-set inference, craft blocks, layer allocation) cost milliseconds, the fifth
(Haiku assembly) seconds. This module runs the first four and lays the craft blocks on
the residual space exactly as ``tracr.compiler.assemble`` does: the sorted join of the
blocks' spaces with the token, index and output spaces.

Each head is factored on its narrower side: Tracr folds ``W_QK [L, R]`` into the query
(width ``R``); when ``L < R`` we fold it into the key instead (width ``L``), and likewise
``W_OV [I, O]`` into the value or the output map. ``x P_L W_QK P_R^T x^T`` is the same
score either way, so only d_head changes; :mod:`craft.tracr.convert` keeps Tracr's
``1/sqrt(key_size)`` temperature.

Shape glossary: D residual width, L/R query/key space dims, I/O value input/output dims.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from craft.tracr._deps import require_tracr, tracr_version
from craft.tracr.convert import finish
from craft.tracr.model import TracrModel, direction, jsonable
from craft.tracr.network import Head, Network, Sublayer
from specs.errors import CraftError


def _projection(basis: Iterable[Any], index: dict) -> np.ndarray:
    """``[D, n]``: column ``j`` is the residual unit vector of the j-th basis direction."""
    basis = list(basis)
    p = np.zeros((len(index), len(basis)))
    for j, d in enumerate(basis):
        p[index[d], j] = 1.0
    return p


def _head(head: Any, index: dict) -> Head:
    """One craft ``AttentionHead`` as query/key/value/output maps on the residual."""
    qk, ov = head.w_qk, head.w_ov
    p_l, p_r = _projection(qk.left_space.basis, index), _projection(qk.right_space.basis, index)
    if qk.matrix.shape[0] < qk.matrix.shape[1]:
        w_q, w_k = p_l, p_r @ qk.matrix.T  # [D, L]
    else:
        w_q, w_k = p_l @ qk.matrix, p_r  # [D, R]
    p_i, p_o = _projection(ov.input_space.basis, index), _projection(ov.output_space.basis, index)
    if ov.matrix.shape[0] < ov.matrix.shape[1]:
        w_v, w_o = p_i, ov.matrix @ p_o.T  # [D, I], [I, D]
    else:
        w_v, w_o = p_i @ ov.matrix, p_o.T  # [D, O], [O, D]
    return Head(w_q=w_q, w_k=w_k, w_v=w_v, w_o=w_o)


def _sublayer(block: Any, index: dict, transformers: Any) -> Sublayer:
    if isinstance(block, transformers.MLP):
        p_in = _projection(block.fst.input_space.basis, index)
        p_out = _projection(block.snd.output_space.basis, index)
        return Sublayer(
            kind="mlp",
            w_in=p_in @ block.fst.matrix,  # [D, M]
            w_out=block.snd.matrix @ p_out.T,  # [M, D]
        )
    return Sublayer(kind="attn", heads=tuple(_head(h, index) for h in block.as_multi().heads()))


def _unsupported(validating: Any, program: Any) -> None:
    bad = validating.static_validate(program)
    if bad:
        first = bad[0]
        raise CraftError(
            f"Tracr cannot compile {first.expr.label!r}: {first.reason}"
            + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""),
            where=f"program {program.label!r}",
            fix="rewrite that operation in the subset Tracr supports",
        )


def graph_with_value_sets(program: Any, vocab: set, max_len: int) -> tuple[Any, Any, Any]:
    """Tracr's first two stages: ``(graph, sink, sources)``, every value set inferred."""
    tracr = require_tracr()
    rasp, nodes = tracr.rasp, tracr.nodes
    _unsupported(tracr.validating, program)
    extracted = tracr.rasp_to_graph.extract_rasp_graph(program)
    graph, sink, sources = extracted.graph, extracted.sink, extracted.sources
    if rasp.tokens.label not in graph.nodes:
        raise CraftError(
            f"program {program.label!r} does not read rasp.tokens",
            fix="build the program from rasp.tokens (Tracr needs a token input)",
        )
    tracr.basis_inference.infer_bases(graph, sink, vocab, max_len)
    return graph, graph.nodes[sink[nodes.ID]], sources


def craft_model(
    program: Any, vocab: set, max_len: int, *, compiler_bos: str, mlp_exactness: float
) -> tuple[Any, Any, Any]:
    """Tracr's stages up to the craft model: ``(craft_model, graph, sink)``."""
    tracr = require_tracr()
    rasp, bases = tracr.rasp, tracr.bases
    graph, sink, sources = graph_with_value_sets(program, vocab, max_len)
    tracr.expr_to_craft_graph.add_craft_components_to_rasp_graph(
        graph,
        bos_dir=bases.BasisDirection(rasp.tokens.label, compiler_bos),
        mlp_exactness=mlp_exactness,
    )
    model = tracr.craft_graph_to_model.craft_graph_to_model(graph, sources)
    return model, graph, sink


def network_from_craft(
    model: Any,
    graph: Any,
    sink: Any,
    max_len: int,
    *,
    compiler_bos: str,
    compiler_pad: str,
    causal: bool,
) -> Network:
    """Lay the craft blocks on the residual space the way ``assemble`` does."""
    tracr = require_tracr()
    rasp, bases, nodes = tracr.rasp, tracr.bases, tracr.nodes
    token_values = graph.nodes[rasp.tokens.label][nodes.VALUE_SET] | {compiler_bos, compiler_pad}
    tokens_space = bases.VectorSpaceWithBasis.from_values(rasp.tokens.label, token_values)
    indices_space = bases.VectorSpaceWithBasis.from_values(rasp.indices.label, range(max_len))
    output_space = bases.VectorSpaceWithBasis(sink[nodes.OUTPUT_BASIS])
    residual = bases.join_vector_spaces(
        model.residual_space, tokens_space, indices_space, output_space
    )
    index = {d: i for i, d in enumerate(residual.basis)}

    w_e = _projection(tokens_space.basis, index).T  # [V, D]
    one = bases.BasisDirection("one")
    if one in index:
        w_e[:, index[one]] = 1.0
    w_pos = np.zeros((max_len + 1, len(index)))  # row 0 (BOS) carries no index
    w_pos[1:] = _projection(indices_space.basis, index).T

    heads = [
        h
        for b in model.blocks
        if not isinstance(b, tracr.transformers.MLP)
        for h in b.as_multi().heads()
    ]
    key_size = max((max(h.w_qk.matrix.shape) for h in heads), default=1)
    return Network(
        residual=tuple(direction(d.name, d.value) for d in residual.basis),
        tokens=tuple(d.value for d in tokens_space.basis),
        w_e=w_e,
        w_pos=w_pos,
        sublayers=tuple(_sublayer(b, index, tracr.transformers) for b in model.blocks),
        attn_scale=1.0 / math.sqrt(key_size),
        output=tuple(direction(d.name, d.value) for d in output_space.basis),
        output_values=tuple(d.value for d in output_space.basis),
        categorical=bool(rasp.is_categorical(sink[nodes.EXPR])),
        bos=compiler_bos,
        pad=compiler_pad,
        causal=causal,
    )


def check_arguments(vocab: Iterable[Any], max_len: int, bos: str, pad: str) -> set:
    """The vocabulary as a set, after the checks every compile path makes."""
    vocab = set(vocab)
    for special in (bos, pad):
        if special in vocab:
            raise CraftError(
                f"the compiler token {special!r} is also in the vocabulary",
                fix="rename the token or pass another compiler_bos / compiler_pad",
            )
    if not vocab:
        raise CraftError("empty vocabulary", fix="pass the tokens the program reads")
    if max_len < 1:
        raise CraftError(f"max_len must be >= 1, got {max_len}", fix="pass --max-len 1 or more")
    return vocab


def from_rasp(
    program: Any,
    vocab: Iterable[Any],
    max_len: int,
    *,
    compiler_bos: str = "BOS",
    compiler_pad: str = "compiler_pad",
    mlp_exactness: float = 100,
    causal: bool = False,
    remove_noops: bool = True,
    prune_residual: bool = True,
    family: str = "standard",
) -> TracrModel:
    """Compile a RASP program into a torch model, skipping Haiku.

    Args:
        program: a RASP ``SOp`` built from ``rasp.tokens`` (and ``rasp.indices``).
        vocab: the input tokens (BOS excluded).
        max_len: longest input (BOS excluded); the model has ``max_len + 1`` positions.
        compiler_bos, compiler_pad: Tracr's BOS and pad tokens (must not be in vocab).
        mlp_exactness: Tracr's discretisation sharpness for numerical MLPs; raise it
            (e.g. to 1000) when the check reports failures on long inputs.
        causal: a causally masked model (Tracr programs assume bidirectional attention).
        remove_noops: drop all-zero sublayers (reported in ``model.report``).
        prune_residual: drop residual directions no weight reads (``tokens:compiler_pad``,
            unused token and index values; reported as ``pruned_directions``).
        family: ``standard`` (Tracr's softmax/ReLU weights) or ``tensor`` (bilinear, for
            the fragment of :mod:`craft.tracr.tensor`; ``mlp_exactness``,
            ``remove_noops`` and ``prune_residual`` do not apply: it is always pruned).

    Returns:
        A :class:`TracrModel`; ``.run(["BOS", ...])`` decodes like Tracr.
    """
    if family == "tensor":
        from craft.tracr.tensor import from_rasp_tensor

        return from_rasp_tensor(
            program,
            vocab,
            max_len,
            compiler_bos=compiler_bos,
            compiler_pad=compiler_pad,
            causal=causal,
        )
    if family != "standard":
        raise CraftError(f"unknown family {family!r}", fix="use 'standard' or 'tensor'")
    vocab = check_arguments(vocab, max_len, compiler_bos, compiler_pad)
    start = time.perf_counter()
    model, graph, sink = craft_model(
        program, vocab, max_len, compiler_bos=compiler_bos, mlp_exactness=mlp_exactness
    )
    network = network_from_craft(
        model,
        graph,
        sink,
        max_len,
        compiler_bos=compiler_bos,
        compiler_pad=compiler_pad,
        causal=causal,
    )
    meta = {
        "tracr_version": tracr_version(),
        "path": "fast",
        "program": program.label,
        "vocab": sorted((jsonable(v) for v in vocab), key=repr),
        "max_len": max_len,
        "mlp_exactness": mlp_exactness,
        "causal": causal,
    }
    out = finish(network, meta, remove_noops=remove_noops, prune_residual=prune_residual)
    out.report["compile_seconds"] = time.perf_counter() - start
    return out
