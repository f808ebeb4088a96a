"""Which heads a compact (attention-only) model needs, where, and every constant it uses.

Layer 0: the previous-token head (if any trigram or induction rule) and one detector
head per group of skip-bigram rules (same window, disjoint cues, disjoint anchors, as in
the one-hot compiler). Layer 1: one trigram head per group of deterministic trigrams
(each cue class in one rule of the group), one readout head per non-deterministic
trigram, one induction head per induction rule (each kind plans its own:
:meth:`~craft.compiler.kinds.base.RuleKind.compact_heads`). What this construction cannot
build yet is a :class:`CraftError` that says so (compile without ``--shape`` instead).

Constants, with ``n = max_len + 1``, ``M`` the margin of the one-hot compiler, ``G = M +
ln V`` and ``F`` the widest logit range of any row the model writes:

* a deterministic rule h adds ``B_h out(target)``: ``2 B_h`` on the target, ``B_h`` on a
  token sharing its category or index (the worst collision of the output code), so
  with ``B_h = F + sum_l 2 B_l + G`` over the lower deterministic rules l that can fire
  with it, the target stays ``G`` above every other token;
* one softmax margin ``m = M + ln n + ln S + delta`` for every head, where ``S`` is the
  largest value a leaked weight can carry (a logit or a score coefficient) and
  ``delta`` the float32 rounding of the largest score: the weight any head leaks
  changes a logit by at most ``e^-M``.

The bound of each rule is then the one-hot compiler's closed form
(:mod:`craft.compiler.constants`) with ``eta = 4 H_total e^-M + 2^-21 4 L`` (``L`` the
logit magnitude the rule meets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from craft.compiler.analysis import Analysis, log_probs
from craft.compiler.compact.codes import Codes
from craft.compiler.compact.common import HeadPlan, unsupported
from craft.compiler.constants import _ETA, _G, _V, DET_BOUND, DIST_BOUND, FP32, MARGIN, _rows
from craft.compiler.kinds import registry
from specs.errors import CraftError

FP32_ULP = 2.0**-24


def plan_heads(an: Analysis) -> list[HeadPlan]:
    """The heads of the compact construction, in layer order."""
    out: list[HeadPlan] = []
    if any(r.rule_kind.needs_prev for r in an.rules):
        out.append(HeadPlan("prev-token", "previous-token", 0, ()))
    return out + kind_heads(an)


def kind_heads(an: Analysis) -> list[HeadPlan]:
    """Every kind's heads (once per kind with rules, in registry order), in layer order;
    a kind without a compact construction is refused naming its first rule."""
    out: list[HeadPlan] = []
    for kind in registry():
        rules = [r for r in an.rules if r.rule_kind is kind]
        if not rules:
            continue
        heads = kind.compact_heads(rules, an)
        if heads is None:
            raise unsupported(rules[0].name)
        out += heads
    return sorted(out, key=lambda hp: hp.layer)  # stable


@dataclass(frozen=True)
class CompactConstants:
    """Every number the compact weights use and the bound each rule is guaranteed."""

    margin: float  # M
    gap: float  # G
    floor_range: float  # F
    softmax_margin: float  # m
    boost: dict[str, float]  # B_h per deterministic rule (induction included)
    bound: dict[str, float]
    fp32_score_error: float  # largest float32 rounding of a score (nats)

    def table(self) -> list[tuple[str, float]]:
        rows = [
            ("margin M (nats)", self.margin),
            ("logit gap G", self.gap),
            ("row range F", self.floor_range),
        ]
        if self.softmax_margin:  # the tensor family has no softmax
            rows += [
                ("softmax margin m", self.softmax_margin),
                ("float32 score rounding", self.fp32_score_error),
            ]
        return rows + [(f"boost {k}", v) for k, v in self.boost.items()]


def boosts(an: Analysis, gap: float, frange: float) -> dict[str, float]:
    boost: dict[str, float] = {}
    for h in sorted((r for r in an.rules if r.deterministic), key=lambda r: -r.index):
        lower = [x for x in an.lower_cofiring(h) if x.deterministic]
        boost[h.name] = frange + sum(2 * boost[x.name] for x in lower) + gap
    return dict(sorted(boost.items(), key=lambda kv: an.info(kv[0]).index))


def floor_range(an: Analysis, gap: float) -> float:
    dists = list(an.direct) + [r.next for r in an.rules if r.next is not None]
    return max(float(lp.max() - lp.min()) for lp in (log_probs(d, gap) for d in dists))


def softmax_margin(n: int, largest: float, score_scale) -> tuple[float, float]:
    """``m = M + ln n + ln S + delta``; ``score_scale(m)`` gives the largest score magnitude
    and its float32 rounding for a margin ``m`` (both grow with m: a fixed point)."""
    m = MARGIN + math.log(n)
    for _ in range(60):
        s_max, err = score_scale(m)
        m_new = MARGIN + math.log(n) + math.log(max(largest, s_max, 1.0)) + err
        if abs(m_new - m) < 1e-9:
            return m_new, err
        m = m_new
    raise CraftError(
        f"float32 cannot resolve the position scores at max_len {n - 1}: their rounding "
        "grows faster than the margin it must leave",
        where="--shape",
        fix="lower max_len, or compile without --shape (one-hot positions)",
    )


def bounds(
    an: Analysis, boost: dict[str, float], plain: float, gap: float, n_heads: int
) -> dict[str, float]:
    v = len(an.spec.vocab)
    leak = 4 * n_heads * math.exp(-MARGIN)
    out = {}
    for name, magnitude, deterministic in _rows(an, {k: 2 * b for k, b in boost.items()}, plain):
        eta = leak + FP32 * 4 * magnitude
        expr = DET_BOUND if deterministic else DIST_BOUND
        out[name] = float(expr.subs({_G: gap, _ETA: eta, _V: v}))
    return out


def constants(an: Analysis, codes: Codes, n_heads: int, score_scale) -> CompactConstants:
    v, n = len(an.spec.vocab), an.spec.max_len + 1
    gap = MARGIN + math.log(v)
    frange = floor_range(an, gap)
    boost = boosts(an, gap, frange)
    largest = 2 * max(boost.values(), default=0.0) + frange + gap
    m, err = softmax_margin(n, largest, score_scale)
    return CompactConstants(
        MARGIN, gap, frange, m, boost, bounds(an, boost, frange + gap, gap, n_heads), err
    )
