"""Which heads a compact (attention-only) model needs, where, and every constant it uses.

Layer 0: the previous-token head (if any trigram or induction rule) and one detector
head per group of skip-bigram rules (same window, disjoint cues, disjoint anchors, as in
the one-hot compiler). Layer 1: one trigram head per group of deterministic trigrams
(each cue class in one rule of the group), one readout head per non-deterministic
trigram, one induction head per induction rule. What this construction cannot build
yet is a :class:`CraftError` that says so (compile without ``--shape`` instead).

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

from craft.compiler.analysis import Analysis, RuleInfo, log_probs
from craft.compiler.compact.codes import Codes
from craft.compiler.constants import _ETA, _G, _V, DET_BOUND, DIST_BOUND, FP32, MARGIN, _rows
from craft.compiler.plan import _detector_groups
from specs.errors import CraftError

FP32_ULP = 2.0**-24


@dataclass(frozen=True)
class HeadPlan:
    name: str
    kind: str  # a ComponentKind value
    layer: int
    rules: tuple[str, ...]


def _unsupported(what: str) -> CraftError:
    return CraftError(
        f"the attention-only compact compiler cannot build {what} yet",
        where="--shape",
        fix="compile without --shape (the one-hot layout builds every spec)",
    )


def plan_heads(an: Analysis) -> list[HeadPlan]:
    """The heads of the compact construction, in layer order."""
    out: list[HeadPlan] = []
    if any(r.kind in ("trigram", "induction") for r in an.rules):
        out.append(HeadPlan("prev-token", "previous-token", 0, ()))
    skips = [r for r in an.rules if r.kind == "skip_bigram"]
    for i, group in enumerate(_detector_groups(skips)):
        for r in group:
            _check_detector_rule(an, r)
        out.append(HeadPlan(f"skip{i}", "skip-detector", 0, tuple(r.name for r in group)))
    groups: list[list[RuleInfo]] = []
    for r in (r for r in an.rules if r.kind == "trigram" and r.deterministic):
        _check_lower(an, r)
        g = next((g for g in groups if not any(x.cue & r.cue for x in g)), None)
        (g.append(r) if g is not None else groups.append([r]))
    out += [
        HeadPlan(f"trigram{i}", "trigram-head", 1, tuple(r.name for r in g))
        for i, g in enumerate(groups)
    ]
    for r in (r for r in an.rules if r.kind == "trigram" and not r.deterministic):
        if an.gates(r):
            raise _unsupported(f"a readout of {r.name} gated by another non-deterministic rule")
        _check_lower(an, r)
        out.append(HeadPlan(f"readout:{r.name}", "readout-head", 1, (r.name,)))
    for r in (r for r in an.rules if r.kind == "induction"):
        for g in an.gates(r):
            induction_gate_ok(an, r, g)
        out.append(HeadPlan(f"induction:{r.name}", "induction", 1, (r.name,)))
    return out


def _check_detector_rule(an: Analysis, r: RuleInfo) -> None:
    if r.deterministic:
        return
    rows = {an.direct[v].items for v in r.cue}
    if len(rows) > 1 or an.gates(r):
        raise _unsupported(
            f"the non-deterministic skip-bigram {r.name} (its cue tokens need one shared "
            "direct row and no higher non-deterministic rule may fire with it)"
        )
    _check_lower(an, r)


def _check_lower(an: Analysis, r: RuleInfo) -> None:
    if not r.deterministic:
        lower = [x.name for x in an.lower_cofiring(r) if x.deterministic and x.kind != "induction"]
        if lower:
            raise _unsupported(f"{r.name} above the deterministic rules {lower}")


def induction_gate_ok(an: Analysis, r: RuleInfo, g: RuleInfo) -> None:
    """A gate must be readable at the induction query: a non-deterministic trigram whose cue
    contains r's cue and whose anchor is a union of whole categories (exact prev code)."""
    vocab = an.spec.vocab
    whole = all(vocab.resolve(vocab.category_of(vocab.tokens[v])) <= g.anchor for v in g.anchor)
    if g.kind != "trigram" or not r.cue <= g.cue or not whole:
        raise _unsupported(f"induction {r.name} gated by {g.name}")


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
