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

import dataclasses
import math
from dataclasses import dataclass

import sympy as sp

from craft.compiler.analysis import Analysis, log_probs
from craft.compiler.kinds import registry
from craft.compiler.kinds.shared import prev_scores, readout_scale
from specs.errors import CraftError
from specs.model import MAX_LEN_LIMIT

MARGIN = 20.0  # nats: every construction error is pushed below e^-MARGIN
FP32 = 2.0**-21  # generous float32 rounding per unit of logit magnitude
FP64 = 2.0**-50  # the same for float64
FLOAT64_MAGNITUDE = 2.0**1000  # the same for float64 (largest number 2**1024)
FLOAT32_MAGNITUDE = 2.0**96
"""The largest logit a float32 model may need: 2**32 below float32's largest number,
room for the sums and the ``d_head`` scaling of the tensor family's factors."""

_G, _ETA, _V = sp.symbols("G eta V", positive=True)
DET_BOUND = sp.log(1 + (_V - 1) * sp.exp(-(_G - 2 * _ETA)))
DIST_BOUND = 2 * _ETA + DET_BOUND


@dataclass(frozen=True)
class Constants:
    """Every number the weights use, with the bound each rule is guaranteed.

    Attributes:
        margin: M. gap: G. floor_range: F.
        scores: the constants of every construction, by report label, in report order:
            the previous-token head's score, then each rule kind's
            (:meth:`~craft.compiler.kinds.base.RuleKind.scores` and ``weights``), e.g.
            the detector's ``C`` and the induction head's ``D, B0, C_m, K``.
        boost: logit boost ``C_h`` of each deterministic rule (induction included).
        bound: guaranteed max KL(spec || model) per rule name (and ``start``, ``bigram``).
        dtype: the float type the model must run in (float64 when its logits outgrow
            float32: tensor-family induction at long max_len).
        magnitude: the largest logit the model writes.
    """

    margin: float
    gap: float
    floor_range: float
    scores: dict[str, float]
    boost: dict[str, float]
    bound: dict[str, float]
    dtype: str = "float32"
    magnitude: float = 0.0

    def table(self) -> list[tuple[str, float]]:
        rows = [
            ("margin M (nats)", self.margin),
            ("logit gap G", self.gap),
            ("row range F", self.floor_range),
        ]
        rows += [(name, value) for name, value in self.scores.items() if value]
        rows += [(f"boost {k}", v) for k, v in self.boost.items()]
        return rows


def derive(an: Analysis, family: str, n_components: int, dtype: str | None = None) -> Constants:
    """Choose constants bottom-up and evaluate the bounds (see module docstring).

    ``dtype`` (None: float32 where it suffices, else float64) sets the rounding the
    bounds allow for; a dtype beyond :func:`float_limit` is a CraftError.
    """
    spec = an.spec
    v, n, m = len(spec.vocab), spec.max_len + 1, MARGIN
    frange, gap = _ranges(an)
    try:
        needs = _largest(an, family, frange, gap)
    except OverflowError:  # 3**max_len beyond float64
        needs = math.inf
    dtype = _dtype(an, family, dtype, needs)
    boost, huge = _boosts(an, family, frange, gap)
    standard = family == "standard"
    weights = {}
    for kind in registry():  # every kind's, present or not: the same table for every spec
        weights.update(kind.weights(family, m, n, spec.max_len))
    c_max = max([frange + gap, *weights.values(), *boost.values()])
    scores = prev_scores(family, m, n, c_max)
    for kind in registry():
        scores.update(kind.scores(family, m, n, c_max))
    leak = 4 * n_components * math.exp(-m) if standard else 0.0
    rounding = FP32 if dtype == "float32" else FP64
    bound = {}
    for name, magnitude, deterministic in _rows(an, boost, frange + gap):
        if name in huge:  # the recency part pays for its own rounding (see _boosts)
            magnitude = boost[name] - 2 * huge[name]
        magnitude *= _writes(an, name, family)
        eta = leak + rounding * 4 * magnitude
        expr = DET_BOUND if deterministic else DIST_BOUND
        bound[name] = float(expr.subs({_G: gap, _ETA: eta, _V: v}))
    return Constants(
        margin=m,
        gap=gap,
        floor_range=frange,
        scores={**scores, **weights},
        boost=boost,
        bound=bound,
        dtype=dtype,
        magnitude=needs,
    )


def _boosts(an: Analysis, family: str, frange: float, gap: float):
    """The boost ``C_h`` of every deterministic rule, lowest priority first.

    ``C_h = R_h + G`` with ``R_h = F + sum_l C_l c_l`` over lower deterministic rules that
    can fire with it (``c_l`` the largest value of l's feature). Tensor family: ``R_h`` is
    multiplied by the largest anchor count of a lower non-deterministic skip-bigram that
    can fire with it (:func:`_readout_count`: its readout writes once per anchor), and two
    changes for induction's recency weights (:func:`~craft.compiler.analysis.recency`):
    induction's own boost is ``2 (R_h + G)``, because its target's copy coordinate leads
    every other by only half the earliest weight, at least ``1/2``; and a rule above it
    adds the induction part ``X = C_ind c_ind`` (exponential in ``max_len``) twice, so
    its margin ``X + G`` grows with the magnitude it must be read against and the
    rounding of that part (``8 eps X``) never eats into ``G``. Returns the boosts and,
    for rules above induction, ``X``.
    """
    spec, boost, huge = an.spec, {}, {}
    for h in sorted((r for r in an.rules if r.deterministic), key=lambda r: -r.index):
        lower = [x for x in an.lower_cofiring(h) if x.deterministic]
        if family != "tensor":
            boost[h.name] = frange + sum(boost[x.name] for x in lower) + gap
            continue
        parts = {x.name: boost[x.name] * x.max_count(spec.max_len) for x in lower}
        rng = (frange + sum(parts.values())) * _readout_count(an, h)
        extra = sum(v for x, v in parts.items() if an.info(x).rule_kind.exponential)
        boost[h.name], big = h.rule_kind.tensor_boost(rng, extra, gap)
        if big:
            huge[h.name] = big
    boost = dict(sorted(boost.items(), key=lambda kv: an.info(kv[0]).index))
    return boost, huge


def _writes(an: Analysis, name: str, family: str) -> float:
    """How many times a rule's readout can write its row (tensor family: once per unit of
    its fire feature, e.g. per anchor of a non-deterministic skip-bigram; its rounding
    grows with it)."""
    info = next((r for r in an.rules if r.name == name), None)
    if family != "tensor" or info is None or info.deterministic:
        return 1.0
    if an.exact_tensor:  # one write, computed through product trees
        return readout_scale(an, info)
    return float(info.max_count(an.spec.max_len))


def _readout_count(an: Analysis, h) -> float:
    """How many times a lower non-deterministic rule's readout can write below ``h``
    (tensor family): its fire feature counts anchors (a skip-bigram's; a trigram's is at
    most 1), and the readout writes its row ``read:r - tok:v`` and its cancels
    ``-fire:l`` that many times, so the range ``h`` must beat grows by that factor."""
    counts = [
        x.max_count(an.spec.max_len)
        for x in an.rules
        if x.index > h.index and not x.deterministic and an.can_cofire(h, x)
    ]
    return max([1.0, *counts])


def _peak(r, max_len: int, family: str) -> float:
    """The largest multiple of its boost a rule's feature writes into the logits."""
    return r.max_count(max_len) if family == "tensor" else 1.0


def _kind_limit(an: Analysis) -> tuple[int | None, str]:
    """The least float32 limit a rule kind of the spec states, and that kind's name."""
    limits = [(r.rule_kind.float32_limit(), r.kind) for r in an.rules]
    limits = [(n, kind) for n, kind in limits if n is not None]
    return min(limits) if limits else (None, "")


def _dtype(an: Analysis, family: str, asked: str | None, needs: float) -> str:
    limit, kind = _kind_limit(an)
    if limit is not None and an.spec.max_len > limit:
        if asked == "float32":
            raise CraftError(
                f"float32 cannot hold this model: {kind} rules meet their bound in float32 "
                f"up to max_len {limit}, and max_len is {an.spec.max_len}",
                where="--dtype float32",
                fix="compile with --dtype float64 (the default picks it when needed)",
            )
        return "float64"
    if needs <= FLOAT32_MAGNITUDE:
        return asked or "float32"
    if asked == "float32" or needs > FLOAT64_MAGNITUDE:
        dtype = asked or "float64"
        limit = float_limit(an, family, dtype)
        raise CraftError(
            f"{dtype} cannot hold this model: its largest logit is {needs:.3g} (tensor-family "
            f"induction's recency weights grow as 3**max_len); {dtype} holds max_len <= "
            f"{limit} for this spec, and max_len is {an.spec.max_len}",
            where="--dtype float32" if asked == "float32" else "max_len",
            fix="compile with --dtype float64 (the default picks it when needed)"
            if asked == "float32"
            else "lower max_len, or compile the standard family",
        )
    return "float64"


def float_limit(an: Analysis, family: str, dtype: str = "float32") -> int | None:
    """The largest max_len at which this spec's model still fits ``dtype`` (its largest
    logit under :data:`FLOAT32_MAGNITUDE` or :data:`FLOAT64_MAGNITUDE`, and in float32
    every rule kind's own limit, e.g. bracket rules'); None when it fits at every length."""
    kind_limit = _kind_limit(an)[0] if dtype == "float32" else None
    magnitude_limit = _magnitude_limit(an, family, dtype)
    limits = [x for x in (kind_limit, magnitude_limit) if x is not None]
    return min(limits) if limits else None


def _magnitude_limit(an: Analysis, family: str, dtype: str) -> int | None:
    """The largest max_len whose largest logit fits ``dtype`` (tensor-family induction)."""
    from craft.compiler.analysis import analyse

    ceiling = FLOAT32_MAGNITUDE if dtype == "float32" else FLOAT64_MAGNITUDE

    def fits(max_len: int) -> bool:
        a = analyse(dataclasses.replace(an.spec, max_len=max_len))
        frange, gap = _ranges(a)
        try:
            return _largest(a, family, frange, gap) <= ceiling
        except OverflowError:
            return False

    if family != "tensor" or not any(r.rule_kind.exponential for r in an.rules):
        return None
    lo, hi = 1, MAX_LEN_LIMIT
    if fits(hi):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def _ranges(an: Analysis) -> tuple[float, float]:
    """``F`` (the largest row range) and ``G`` (the gap) of a spec."""
    gap = MARGIN + math.log(len(an.spec.vocab))
    dists = list(an.direct) + [r.next for r in an.rules if r.next is not None]
    return max(float(lp.max() - lp.min()) for lp in (log_probs(d, gap) for d in dists)), gap


def _largest(an: Analysis, family: str, frange: float, gap: float) -> float:
    """The largest logit the model writes: a boost times the largest feature value."""
    boost, _ = _boosts(an, family, frange, gap)
    peaks = [boost[r.name] * _peak(r, an.spec.max_len, family) for r in an.rules if r.deterministic]
    return max([frange + gap, *peaks])


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
