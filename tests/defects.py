"""Unplanted defects of the crafted toy-language model: the one table the tests
(tests/verify/test_unplanted.py) and the benchmark (benchmarks/check.py) build them from.

Each edit changes weights only (the spec untouched), in place, under ``no_grad``; each
row names the default claim that should find it (the benchmark runs all of them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from craft.models import Transformer, component_records
from craft.models.layout import Direction

LATE = 100  # first position the late-position defect breaks
FAR = 60  # first position of the long-context mechanism fault


def _head(model: Transformer, name: str):
    rec = next(r for r in component_records(model) if r.name == name)
    return model.blocks[rec.layer].attn, rec.head


def _query_dim(model: Transformer, attn, h: int, t: int) -> int:
    """The head dimension where query position ``t`` reads its positional score."""
    return int(attn.W_Q[h][model.layout.index(Direction("pos", t))].abs().argmax())


def late_positions(model: Transformer) -> None:
    """Positions from ``LATE`` on lose their positional embedding."""
    model.pos_embed.W_pos[LATE:] = 0


def outside_window(model: Transformer) -> None:
    """The skip-bigram head also sees an anchor 10 back (its window is 2..9)."""
    attn, h = _head(model, "skip0")
    lay = model.layout
    for t in range(11, model.cfg.n_ctx):
        j = _query_dim(model, attn, h, t)
        near = attn.W_K[h][lay.index(Direction("pos", t - 9)), j]
        attn.W_K[h][lay.index(Direction("pos", t - 10)), j] = near


def trigram_near_miss(model: Transformer) -> None:
    """The ``the alice`` AND unit also fires after ``a`` (another FUNC token)."""
    lay, mlp = model.layout, model.blocks[0].mlp
    the, a = lay.index(Direction("prev", "the")), lay.index(Direction("prev", "a"))
    alice = lay.index(Direction("tok", "alice"))
    units = (mlp.W_in[the] > 0) & (mlp.W_in[alice] > 0)
    mlp.W_in[a, units] = mlp.W_in[the, units]


def start_swap(model: Transformer) -> None:
    """After BOS alone, the logits of ``alice`` and ``the`` are swapped."""
    row = model.unembed.W_U[model.layout.index(Direction("bos"))]
    alice, the = ALICE_THE
    row[[alice, the]] = row[[the, alice]].clone()


ALICE_THE = (0, 40)  # ids of `alice` and `the` in the toy language (checked by the tests)


def prev_split_long(model: Transformer) -> None:
    """From position ``FAR`` on, the previous-token head splits its attention between
    the previous token and the one before."""
    attn, h = _head(model, "prev-token")
    lay = model.layout
    for t in range(FAR, model.cfg.n_ctx):
        j = _query_dim(model, attn, h, t)
        prev = attn.W_K[h][lay.index(Direction("pos", t - 1)), j]
        attn.W_K[h][lay.index(Direction("pos", t - 2)), j] = prev


@dataclass(frozen=True)
class Defect:
    name: str
    edit: Callable[[Transformer], None]
    claim: str  # the default claim expected to find it


DEFECTS = (
    Defect("wrong only from position 100 on", late_positions, "holds:the-alice"),
    Defect("skip-bigram window one too wide", outside_window, "holds:fallback"),
    Defect("trigram fires on a same-category first token", trigram_near_miss, "holds:func-noun"),
    Defect("start distribution: two logits swapped", start_swap, "holds:start"),
    Defect("previous-token head split from position 60", prev_split_long, "role:prev-token"),
)


def broken(model: Transformer, defect: Defect) -> Transformer:
    """``model`` with ``defect`` applied (in place), returned."""
    with torch.no_grad():
        defect.edit(model)
    return model
