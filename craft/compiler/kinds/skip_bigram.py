"""Skip-bigram rules: the current token is the cue and an anchor stands ``lo..hi`` back.

One-hot: a layer-0 detector head per group of rules (same window, disjoint cues,
disjoint anchors) writes ``fire:r``. Compact: the same group as one head on token and
position codes (:func:`craft.compiler.compact.heads.detector`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from craft.compiler.analysis import Analysis, RuleInfo, log_probs
from craft.compiler.compact import heads as H
from craft.compiler.compact.codes import Codes, Separation, Vec
from craft.compiler.compact.common import (
    HeadPlan,
    Interference,
    check_lower,
    collision,
    interference,
    unsupported,
    write,
)
from craft.compiler.kinds.base import Component, Reading, named
from craft.compiler.kinds.shared import DetectorKind, fire_boost
from craft.compiler.primitives import HeadCircuit, ind, tok
from craft.models.components import ComponentKind, Sublayer
from craft.models.layout import BOS_DIR, ONE, Direction, Layout
from specs.model import SkipBigram

if TYPE_CHECKING:
    from craft.compiler.constants import Constants

DET_SCORE = "detector score C"


@dataclass(frozen=True)
class Detector(Component):
    """One head detecting several skip-bigram rules with one window.

    Rules share a head when their cues are disjoint and their anchors are disjoint, so
    at most one rule's cue matches ``x[t]`` and each anchor token belongs to one rule.
    """

    kind: ClassVar[ComponentKind] = ComponentKind.SKIP_DETECTOR

    rules: tuple[str, ...]
    window: tuple[int, int]
    name: str = ""
    sublayer: Sublayer = "attn"

    def rule_names(self) -> tuple[str, ...]:
        return self.rules

    def writes(self, an: Analysis) -> set[Direction]:
        return {Direction("fire", n) for n in self.rules}

    def circuits(self, an: Analysis, k: Constants, tensor: bool) -> HeadCircuit:
        return detector(self, an, k, tensor)

    def unembed(self, an: Analysis, k: Constants, w_u: np.ndarray, layout: Layout) -> None:
        for n in self.rules:
            fire_boost(an.info(n), k, w_u, layout)


def detector_groups(rules: list[RuleInfo]) -> list[list[RuleInfo]]:
    """Rules grouped into heads: one window, disjoint cues, disjoint anchors."""
    groups: list[list[RuleInfo]] = []
    for r in rules:
        for g in groups:
            if g[0].window == r.window and all(
                not (x.cue & r.cue) and not (x.anchor & r.anchor) for x in g
            ):
                g.append(r)
                break
        else:
            groups.append([r])
    return groups


def _band(lo: int, hi: int, max_len: int, w: float) -> list[tuple[Vec, Vec]]:
    """Terms of ``w [lo <= t - s <= hi, s >= 1]`` over one-hot positions."""
    out = []
    for t in range(1, max_len + 1):
        keys = [Direction("pos", s) for s in range(max(1, t - hi), t - lo + 1)]
        if keys:
            out.append(({Direction("pos", t): w}, ind(keys)))
    return out


def detector(c: Detector, an: Analysis, k: Constants, tensor: bool) -> HeadCircuit:
    """``fire:r = [x[t] in cue_r] [some anchor of r within the window]``.

    Standard: score ``C ([in window] + sum_r [x_t in cue_r][y_s in anchor_r])`` and
    ``1.5 C`` on BOS. When r's cue matches and an anchor is in the window the anchors
    score ``2C`` against ``<= 1.5C``, so they hold all but ``n e^{-C/2}`` of the weight;
    otherwise BOS (value 0) wins by ``C/2``. Every anchor's value is ``fire:r`` (anchors
    of a head's rules are disjoint), so the output is the OR of "anchor in window", up
    to ``n e^{-C/2}``; ``C = 2(M + ln n + ln C_max)``. Tensor: factor 1 the window band,
    factor 2 the cue-anchor table; the output is the *count* of anchors in the window
    (exact; equal to the OR when at most one anchor is there).
    """
    lo, hi = c.window
    rules = [an.info(n) for n in c.rules]
    w = 1.0 if tensor else k.scores[DET_SCORE]
    band = _band(lo, hi, an.spec.max_len, w)
    pairs = [
        (ind([tok(v, an) for v in r.cue], w), ind([tok(v, an) for v in r.anchor])) for r in rules
    ]
    ov = [(ind([tok(v, an) for v in r.anchor]), {Direction("fire", r.name): 1.0}) for r in rules]
    if tensor:
        return HeadCircuit(c.name, band, ov, pairs)
    return HeadCircuit(c.name, band + pairs + [({ONE: 1.5 * w}, {BOS_DIR: 1.0})], ov)


# -- compact ---------------------------------------------------------------------------
def _check_detector_rule(an: Analysis, r: RuleInfo) -> None:
    if r.deterministic:
        return
    rows = {an.direct[v].items for v in r.cue}
    if len(rows) > 1 or an.gates(r):
        raise unsupported(
            f"the non-deterministic skip-bigram {r.name} (its cue tokens need one shared "
            "direct row and no higher non-deterministic rule may fire with it)"
        )
    check_lower(an, r)


def _anchor_map(name, codes: Codes, rules, boost) -> list[tuple[Vec, Vec]]:
    """OV exact on every anchor: least squares from the anchors' token codes to writes."""
    anchors = sorted({v for r in rules for v in r.anchor})
    owner = {v: r for r in rules for v in r.anchor}
    x = codes.matrix(codes.tok)[anchors]
    y = np.stack([codes.vector(write(codes, owner[v], boost)) for v in anchors])
    w = np.linalg.lstsq(x, y, rcond=None)[0]
    if np.abs(x @ w - y).max() > 1e-6 * max(1.0, np.abs(y).max()):
        raise collision(name, "its anchors (two anchors of different rules share a code)")
    dims = codes.layout.directions
    return [
        ({dims[j]: 1.0}, {dims[i]: float(w[j, i]) for i in np.flatnonzero(w[j])})
        for j in np.flatnonzero(np.abs(w).sum(1) > 1e-12)
    ]


def compact_detector(an, codes, pf, hp, m, boost) -> tuple[HeadCircuit, Interference | None]:
    """The compact detector head (:func:`craft.compiler.compact.heads.detector`) with its
    constants from the computed separation of its anchors."""
    rules = [an.info(n) for n in hp.rules]
    lo, hi = rules[0].window
    width, top = hi - lo + 1, ((hi - lo) / 2) ** 2
    sep = Separation.worst(
        [codes.separation(codes.tok_set(r.anchor), r.anchor, codes.tok) for r in rules]
    )
    low, phi, high = sep.low, sep.phi, sep.high
    if low <= high:
        raise collision(hp.name, "an anchor from a token that is not one")
    rho = (phi - low) / (low - high)
    if width <= rho * top:
        raise collision(hp.name, "anchors inside the window from anchors outside it")
    a = 2 * m * (1 + rho) / (width - rho * top)
    c = (a * top + 2 * m) / (low - high)
    det = [H.DetectorRule(codes.cls_set(r.cue), codes.tok_set(r.anchor), {}) for r in rules]
    value = _anchor_map(hp.name, codes, rules, boost)
    circuit = H.detector(hp.name, codes, pf, (lo, hi), det, a, c, c * low - m, value)
    return circuit, interference(an, hp, "anchor", sep)


class SkipBigramKind(DetectorKind):
    name = "skip_bigram"
    rule = SkipBigram
    label = "skip-bigram"

    def read(self, rule: SkipBigram) -> Reading:
        return Reading(rule.cue, rule.anchor, rule.window, rule.next)

    def shared_components(self, rules: list[RuleInfo], an: Analysis) -> list[Component]:
        return [
            named(Detector(tuple(r.name for r in group), group[0].window), f"skip{i}")
            for i, group in enumerate(detector_groups(rules))
        ]

    def scores(self, family: str, margin: float, n: int, c_max: float) -> dict[str, float]:
        """The detector's ``C = 2(M + ln n + ln C_max)`` (:func:`detector`)."""
        standard = family == "standard"
        return {DET_SCORE: 2 * (margin + math.log(n) + math.log(c_max)) if standard else 0.0}

    def compact_heads(self, rules: list[RuleInfo], an: Analysis) -> list[HeadPlan]:
        out = []
        for i, group in enumerate(detector_groups(rules)):
            for r in group:
                _check_detector_rule(an, r)
            out.append(HeadPlan(f"skip{i}", "skip-detector", 0, tuple(r.name for r in group)))
        return out

    def compact_head(self, an, codes, pf, hp, m, boost):
        return compact_detector(an, codes, pf, hp, m, boost)

    def compact_read_row(self, r: RuleInfo, an: Analysis, gap: float) -> np.ndarray:
        """The detector cannot cancel the direct row: fold it into the read row."""
        row = log_probs(r.next, gap)
        return row - log_probs(an.direct[min(r.cue)], gap)


SKIP_BIGRAM = SkipBigramKind()
