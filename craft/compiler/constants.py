"""Stage 3: analysis -> constants and per-rule error bounds, in closed form.

Symbols: ``M`` the margin in nats every construction error is pushed below
(``e^-M``); ``V`` vocabulary size; ``n = max_len + 1`` positions; ``G = M + ln V``
the logit gap between a distribution's support and its zeros; ``F`` the largest
logit range of any row the model writes (``ln(q_max / q_min) + G``).

Deterministic rules are realised by a *boost*: a logit ``C_h`` on their target. When
``h`` fires first, every other contribution lies in a range ``R_h = F + sum_l C_l c_l``
over lower deterministic rules ``l`` that can fire with it (``c_l`` the largest value
of l's fire feature: 1 in the standard family, a count in the tensor family), so
``C_h = R_h + G`` leaves the target ``G`` nats above everything else and

    KL_h <= ln(1 + (V - 1) exp(-(G - 2 eta)))                       (deterministic)

Non-deterministic rules are realised exactly (readouts cancel lower rules) up to a
logit error ``eta`` on every coordinate, so

    KL_r <= 2 eta + ln(1 + (V - 1) exp(-(G - 2 eta)))                (otherwise)

``eta`` = attention leakage (standard family only: every softmax margin below is
chosen so a leaked weight times the largest weight it meets is ``<= e^-M``; four
such terms per component) + float32 rounding ``2^-21 * 4 * (F + G)`` (``C_h`` for boosts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import sympy as sp

from craft.compiler.analysis import Analysis, log_probs

MARGIN = 20.0  # nats: every construction error is pushed below e^-MARGIN
FP32 = 2.0**-21  # generous float32 rounding per unit of logit magnitude

_G, _ETA, _V = sp.symbols("G eta V", positive=True)
DET_BOUND = sp.log(1 + (_V - 1) * sp.exp(-(_G - 2 * _ETA)))
DIST_BOUND = 2 * _ETA + DET_BOUND


@dataclass(frozen=True)
class Constants:
    """Every number the weights use, with the bound each rule is guaranteed.

    Attributes:
        margin: M. gap: G. floor_range: F.
        prev_score: previous-token head logit on ``t-1`` (0 elsewhere).
        det_score: detector unit ``C``: in-window anchor ``2C``, BOS ``1.5C``, rest ``<= C``.
        ind_step, ind_bos, ind_match, ind_gate: induction head ``D, B0, C_m, K``.
        boost: logit boost ``C_h`` of each deterministic rule (induction included).
        bound: guaranteed max KL(spec || model) per rule name (and ``start``, ``bigram``).
    """

    margin: float
    gap: float
    floor_range: float
    prev_score: float
    det_score: float
    ind_step: float
    ind_bos: float
    ind_match: float
    ind_gate: float
    boost: dict[str, float]
    bound: dict[str, float]

    def table(self) -> list[tuple[str, float]]:
        rows = [
            ("margin M (nats)", self.margin),
            ("logit gap G", self.gap),
            ("row range F", self.floor_range),
        ]
        for name, value in [
            ("prev-token score", self.prev_score),
            ("detector score C", self.det_score),
            ("induction step D", self.ind_step),
            ("induction BOS B0", self.ind_bos),
            ("induction match C_m", self.ind_match),
            ("induction gate K", self.ind_gate),
        ]:
            if value:
                rows.append((name, value))
        rows += [(f"boost {k}", v) for k, v in self.boost.items()]
        return rows


def derive(an: Analysis, family: str, n_components: int) -> Constants:
    """Choose constants bottom-up and evaluate the bounds (see module docstring)."""
    spec = an.spec
    v, n, m = len(spec.vocab), spec.max_len + 1, MARGIN
    gap = m + math.log(v)
    dists = list(an.direct) + [r.next for r in an.rules if r.next is not None]
    frange = max(float(lp.max() - lp.min()) for lp in (log_probs(d, gap) for d in dists))
    boost: dict[str, float] = {}
    for h in sorted((r for r in an.rules if r.deterministic), key=lambda r: -r.index):
        lower = [x for x in an.lower_cofiring(h) if x.deterministic]
        count = (lambda x: x.max_count(spec.max_len)) if family == "tensor" else (lambda x: 1)
        boost[h.name] = frange + sum(boost[x.name] * count(x) for x in lower) + gap
    boost = dict(sorted(boost.items(), key=lambda kv: an.info(kv[0]).index))
    standard = family == "standard"
    d = m + math.log(n) if standard else 0.0
    c_m = d * spec.max_len + 2 * d
    k = c_m + d + m if standard else 0.0
    c_max = max([frange + gap, c_m, k, *boost.values()])
    prev = m + math.log(n) + math.log(c_max) if standard else 0.0
    det = 2 * (m + math.log(n) + math.log(c_max)) if standard else 0.0
    leak = 4 * n_components * math.exp(-m) if standard else 0.0
    bound = {}
    for name, magnitude, deterministic in _rows(an, boost, frange + gap):
        eta = leak + FP32 * 4 * magnitude
        expr = DET_BOUND if deterministic else DIST_BOUND
        bound[name] = float(expr.subs({_G: gap, _ETA: eta, _V: v}))
    return Constants(
        margin=m,
        gap=gap,
        floor_range=frange,
        prev_score=prev,
        det_score=det,
        ind_step=d,
        ind_bos=d,
        ind_match=c_m if standard else 0.0,
        ind_gate=k,
        boost=boost,
        bound=bound,
    )


def _rows(an: Analysis, boost: dict[str, float], plain: float):
    """(rule name, logit magnitude it meets, deterministic?) for every rule of the spec."""
    infos = {r.name: r for r in an.rules}
    for rule in an.spec.rules:
        info = infos.get(rule.name)
        if info is None:  # bigram (or a shadowed rule): read from the direct path
            yield rule.name, plain, False
        elif info.deterministic:
            yield rule.name, boost[rule.name], True
        else:
            yield rule.name, plain, False
    yield "start", plain, False
