"""The bridge's intermediate form: a Tracr network as numpy matrices on named directions.

Both paths into PyTorch produce a :class:`Network`: the fast path from Tracr's craft
blocks (:mod:`craft.tracr.fast`), the slow path from an assembled Haiku model
(:mod:`craft.tracr.assembled`). :func:`pack` lays its sublayers into standard-family
blocks (dropping no-op sublayers and reporting them); :mod:`craft.tracr.convert` turns
the packed network into a torch ``Transformer``.

Shape glossary: D residual width (= number of residual labels), V input tokens
(vocabulary + BOS + pad, in Tracr's encoding order), P positions (max_len + 1),
E a head's width, M an MLP's hidden width, O output columns.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from craft.models.layout import Direction

Kind = Literal["attn", "mlp"]


@dataclass(frozen=True, eq=False)
class Head:
    """One softmax head, scores ``(x w_q)(x w_k)^T * scale``, output ``softmax . (x w_v) w_o``.

    Attributes:
        w_q, w_k: ``[D, E]`` query and key maps (Tracr folds W_QK into the query side).
        w_v: ``[D, E]`` value map; ``w_o``: ``[E, D]`` output map.
        b_q, b_k, b_v: ``[E]`` biases (zero for compiled models; kept for assembled ones).
    """

    w_q: np.ndarray
    w_k: np.ndarray
    w_v: np.ndarray
    w_o: np.ndarray
    b_q: np.ndarray | None = None
    b_k: np.ndarray | None = None
    b_v: np.ndarray | None = None

    @property
    def width(self) -> int:
        return max(self.w_q.shape[1], self.w_v.shape[1])

    def is_noop(self) -> bool:
        """A head writes nothing when its value or output map is zero (and no value bias)."""
        no_v = not np.any(self.w_v) and (self.b_v is None or not np.any(self.b_v))
        return no_v or not np.any(self.w_o)


@dataclass(frozen=True, eq=False)
class Sublayer:
    """An attention sublayer (``heads``) or a ReLU MLP (``w_in [D, M]``, ``w_out [M, D]``).

    ``b_out`` is the residual-side bias of either kind (attention's ``b_O``, MLP's ``b_out``).
    """

    kind: Kind
    heads: tuple[Head, ...] = ()
    w_in: np.ndarray | None = None
    b_in: np.ndarray | None = None
    w_out: np.ndarray | None = None
    b_out: np.ndarray | None = None

    def is_noop(self) -> bool:
        """True when the sublayer adds zero to the residual stream on every input."""
        if self.b_out is not None and np.any(self.b_out):
            return False
        if self.kind == "attn":
            return all(h.is_noop() for h in self.heads)
        return (
            self.w_out is None
            or not np.any(self.w_out)
            or (not np.any(self.w_in) and (self.b_in is None or not np.any(self.b_in)))
        )

    @property
    def hidden(self) -> int:
        return 0 if self.w_in is None else self.w_in.shape[1]


@dataclass(frozen=True, eq=False)
class Network:
    """A Tracr model before it becomes torch: embeddings, sublayers, decoding info.

    Attributes:
        residual: the residual directions, Tracr's sorted basis (``tokens:a``, ``one``, ...).
        tokens: input token values in encoding order (row ``i`` of ``w_e`` embeds ``tokens[i]``).
        w_e: ``[V, D]`` token embedding (tokens plus Tracr's ``one`` direction).
        w_pos: ``[P, D]`` positions; row 0 (BOS) is zero, row ``t`` holds ``indices:t-1``.
        sublayers: in execution order, attention and MLP interleaved as Tracr runs them.
        attn_scale: the factor scores are multiplied by: Haiku's ``1/sqrt(key_size)``.
        output: the output space's directions (categorical: one per value, in order).
        output_values: the decoded value of each output direction (categorical).
        categorical: categorical (argmax) or numerical (one float) output.
        bos, pad: the compiler's BOS and pad tokens.
    """

    residual: tuple[Direction, ...]
    tokens: tuple[Any, ...]
    w_e: np.ndarray
    w_pos: np.ndarray
    sublayers: tuple[Sublayer, ...]
    attn_scale: float
    output: tuple[Direction, ...]
    output_values: tuple[Any, ...]
    categorical: bool
    bos: str
    pad: str | None
    causal: bool = False


@dataclass(frozen=True)
class Packed:
    """Sublayers laid into blocks of (attention, MLP); ``None`` is a zero-filled slot.

    Attributes:
        blocks: one ``(attn, mlp)`` pair per standard-family block.
        removed: no-op sublayers dropped, as ``"attn@3"`` (kind and index in the source order).
        zero_slots: slots left zero because every block has both kinds (``"L1.attn"``).
    """

    blocks: tuple[tuple[Sublayer | None, Sublayer | None], ...]
    removed: tuple[str, ...]
    zero_slots: tuple[str, ...]


def pack(sublayers: tuple[Sublayer, ...], *, remove_noops: bool = True) -> Packed:
    """Lay sublayers into (attention, MLP) blocks in order, dropping no-op sublayers.

    Greedy is optimal for order-preserving packing: an attention always opens a new block
    and an MLP joins the current block only if that block has no MLP yet. Dropping a
    no-op (all-zero) sublayer can let its neighbours share a block, which is how removal
    saves whole layers.
    """
    removed: list[str] = []
    blocks: list[list[Sublayer | None]] = []
    for i, sub in enumerate(sublayers):
        if remove_noops and sub.is_noop():
            removed.append(f"{sub.kind}@{i}")
            continue
        if sub.kind == "attn":
            blocks.append([sub, None])
        elif not blocks or blocks[-1][1] is not None:
            blocks.append([None, sub])
        else:
            blocks[-1][1] = sub
    zero = [
        f"L{i}.{kind}"
        for i, blk in enumerate(blocks)
        for kind, sub in zip(("attn", "mlp"), blk, strict=True)
        if sub is None
    ]
    return Packed(tuple((a, m) for a, m in blocks), tuple(removed), tuple(zero))


def _reads(sub: Sublayer) -> list[np.ndarray]:
    """The ``[D, *]`` maps through which a sublayer reads the residual."""
    if sub.kind == "attn":
        return [w for h in sub.heads for w in (h.w_q, h.w_k, h.w_v)]
    return [] if sub.w_in is None else [sub.w_in]


def _cut_writes(sub: Sublayer, keep: np.ndarray) -> Sublayer:
    """The sublayer with residual rows of its reads and columns of its writes cut to ``keep``."""

    def cut(b: np.ndarray | None) -> np.ndarray | None:
        return None if b is None else b[keep]

    if sub.kind == "attn":
        heads = tuple(
            replace(h, w_q=h.w_q[keep], w_k=h.w_k[keep], w_v=h.w_v[keep], w_o=h.w_o[:, keep])
            for h in sub.heads
        )
        return replace(sub, heads=heads, b_out=cut(sub.b_out))
    return replace(
        sub,
        w_in=None if sub.w_in is None else sub.w_in[keep],
        w_out=None if sub.w_out is None else sub.w_out[:, keep],
        b_out=cut(sub.b_out),
    )


def prune(network: Network) -> tuple[Network, tuple[Direction, ...]]:
    """Drop the residual directions that no live sublayer and no output reads.

    A direction nothing reads (Tracr's ``tokens:compiler_pad``; token or index values no
    operation looks at) can be written to but never changes any later computation or
    the logits, so removing its coordinate (its column in every write, its row in every
    read, which is zero) leaves every kept coordinate of every residual, and the
    output, unchanged. Repeated until nothing changes, since a sublayer whose writes all
    go to dropped directions becomes a no-op and stops counting as a reader.
    Returns the pruned network and the dropped directions.
    """
    out_set = set(network.output)
    dropped: list[Direction] = []
    while True:
        read = np.array([d in out_set for d in network.residual])
        for sub in network.sublayers:
            if sub.is_noop():
                continue
            for w in _reads(sub):
                read |= np.any(w != 0, axis=1)
        if read.all():
            return network, tuple(dropped)
        dropped += [d for d, r in zip(network.residual, read, strict=True) if not r]
        network = replace(
            network,
            residual=tuple(d for d, r in zip(network.residual, read, strict=True) if r),
            w_e=network.w_e[:, read],
            w_pos=network.w_pos[:, read],
            sublayers=tuple(_cut_writes(s, read) for s in network.sublayers),
        )
