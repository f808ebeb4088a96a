"""The tensor family under a budget: where a product of two factors is exact.

Bilinear attention has no softmax, so nothing is thresholded: a pattern must be *exactly*
the selection it stands for. Two facts decide what fits a small residual:

* **Position by residues.** With ``pos:a<i> = [t mod a = i]`` and ``pos:b<j> = [t mod b =
  j]`` (``a, b`` coprime, ``a b >= max_len``: ``a + b`` dimensions instead of
  ``max_len + 1``), factor 1 ``[(t-1) mod a = s mod a]`` times factor 2 ``[(t-1) mod b =
  s mod b]`` is ``[s = t-1]`` exactly for ``0 <= s <= t <= max_len`` (Chinese remainder
  theorem: ``s - (t-1)`` lies in ``(-a b, a b)``, so congruence mod ``a b`` is equality).
  Both factors are spent on the position.
* **Identity by category and index.** ``[cat(x) = cat(y)]`` times ``[idx(x) = idx(y)]`` is
  ``[x = y]`` exactly, where either factor alone collides.

So a previous-token head (position x position) and an induction head (category x index,
summing over every earlier occurrence: the ``followers-agree`` condition of the one-hot
tensor family) are exact. A trigram, skip-bigram or readout head would need a token
condition *and* an exact position selection: three factors where bilinear attention has
two (with one-hot positions one factor suffices, which is what the one-hot tensor
compiler does, at ``max_len + 1`` position dimensions). Those rules, and gated induction,
are refused with one line.
"""

from __future__ import annotations

import math

from craft.compiler.analysis import Analysis
from craft.compiler.compact.budget import HeadPlan, boosts, floor_range, kind_heads
from craft.compiler.compact.codes import Codes, Vec
from craft.compiler.constants import _ETA, _G, _V, DET_BOUND, DIST_BOUND, FP32, MARGIN, _rows
from craft.compiler.primitives import HeadCircuit
from craft.models.layout import Direction
from specs.errors import CraftError


def residues(max_len: int) -> tuple[int, int]:
    """Coprime ``(a, a + 1)`` with ``a (a + 1) >= max_len``, ``a`` as small as possible."""
    a = max(1, math.isqrt(max(max_len - 1, 0)))
    while a * (a + 1) < max_len:
        a += 1
    return a, a + 1


def position_dims(max_len: int) -> tuple[Direction, ...]:
    a, b = residues(max_len)
    return tuple(Direction("posa", i) for i in range(a)) + tuple(
        Direction("posb", j) for j in range(b)
    )


def position(max_len: int, p: int) -> Vec:
    """The residue code of position ``p`` (BOS at 0 included: it is a key of the prev head)."""
    a, b = residues(max_len)
    return {Direction("posa", p % a): 1.0, Direction("posb", p % b): 1.0}


def plan_tensor(an: Analysis) -> list[HeadPlan]:
    """Previous-token and induction heads (the kinds marked ``tensor_compact``); every other
    head needs three factors."""
    other = [r.name for r in an.rules if not r.rule_kind.tensor_compact]
    if other:
        raise CraftError(
            f"the tensor family under a budget cannot build {other[0]}: its head needs a "
            "token condition and an exact position selection, three factors where bilinear "
            "attention has two",
            where="--shape",
            fix="use --family standard with --shape, or drop --shape (one-hot positions)",
        )
    gated = [r.name for r in an.rules if an.gates(r)]
    if gated:
        raise CraftError(
            f"the tensor family under a budget cannot gate induction {gated[0]}",
            where="--shape",
            fix="use --family standard with --shape, or drop --shape",
        )
    out = [HeadPlan("prev-token", "previous-token", 0, ())] if an.rules else []
    return out + kind_heads(an)


def prev_token(codes: Codes, max_len: int) -> HeadCircuit:
    """``pattern[t, s] = [(t-1) = s mod a] [(t-1) = s mod b] = [s = t - 1]``.

    Factor 1 term ``i``: query ``pos:a<i+1 mod a>``, key ``pos:a<i>``; factor 2 likewise
    mod b. OV: the prev code (category of the carried categories, and index), as in the
    standard family; BOS carries none, so ``prev`` is 0 at ``t = 1``.
    """
    a, b = residues(max_len)
    f1 = [({Direction("posa", (i + 1) % a): 1.0}, {Direction("posa", i): 1.0}) for i in range(a)]
    f2 = [({Direction("posb", (j + 1) % b): 1.0}, {Direction("posb", j): 1.0}) for j in range(b)]
    ov = []
    for cat in codes.prev_cats:
        src = {codes.cls(c): 1.0 for c, m in enumerate(codes.classes) if codes.cat_of[m[0]] == cat}
        ov.append((src, {Direction("prevcat", cat): 1.0}))
    n_idx = len(codes.layout.named("idx"))
    ov += [({Direction("idx", i): 1.0}, {Direction("previdx", i): 1.0}) for i in range(n_idx)]
    return HeadCircuit("prev-token", f1, ov, f2)


def tensor_bounds(an: Analysis, n_heads: int) -> tuple[dict[str, float], dict[str, float], float]:
    """``(boosts, bounds, floor range)``: no softmax leaks; float32 rounding of logits up
    to ``max_len`` summed copies of ``2 B``."""
    v = len(an.spec.vocab)
    gap = MARGIN + math.log(v)
    frange = floor_range(an, gap)
    boost = boosts(an, gap, frange)
    magnitudes = {k: 2 * b * an.spec.max_len for k, b in boost.items()}
    out = {}
    for name, magnitude, deterministic in _rows(an, magnitudes, frange + gap):
        expr = DET_BOUND if deterministic else DIST_BOUND
        out[name] = float(expr.subs({_G: gap, _ETA: FP32 * 4 * magnitude, _V: v}))
    return boost, out, frange
