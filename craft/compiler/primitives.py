"""Stage 4a: components -> circuits. Each primitive as named-direction bilinear forms.

A circuit says, in residual directions only, what a head or MLP unit computes; the
assembler turns it into weight matrices. Notation: ``x`` the residual at the query
position ``t``, ``y`` at a key position ``s``; ``[P]`` is 1 if P holds else 0.

* A head term ``(q, k)`` contributes ``(q . x)(k . y)`` to the score (standard) or to
  one of the two bilinear factors (tensor); an OV term ``(r, w)`` writes ``(r . y) w``.
* A ReLU unit computes ``relu(inp . x) out``; a bilinear unit ``(left . x)(right . x) out``.
  The constant comes from the ``one`` direction (1 at every non-BOS position), so every
  unit is exactly 0 at BOS and no biases are needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from craft.compiler.analysis import Analysis, RuleInfo, recency
from craft.compiler.constants import Constants
from craft.compiler.plan import Component, Detector, InductionHead, PrevToken, Readout, TrigramAnd
from craft.models.layout import BOS_DIR, ONE, Direction

Vec = dict[Direction, float]


@dataclass(frozen=True, eq=False)
class HeadCircuit:
    name: str
    qk: list[tuple[Vec, Vec]]  # standard: the score; tensor: factor 1
    ov: list[tuple[Vec, Vec]]
    qk2: list[tuple[Vec, Vec]] = field(default_factory=list)  # tensor: factor 2


@dataclass(frozen=True, eq=False)
class UnitCircuit:
    name: str
    inp: Vec  # standard: pre-activation; tensor: left factor
    out: Vec
    right: Vec | None = None  # tensor: right factor


def tok(v: int, an: Analysis) -> Direction:
    return Direction("tok", an.spec.vocab.tokens[v])


def _ind(dirs, w: float = 1.0) -> Vec:
    """``w`` times the indicator that the residual holds one of ``dirs``."""
    return dict.fromkeys(dirs, w)


def circuits(c: Component, an: Analysis, k: Constants, family: str):
    """The HeadCircuit or UnitCircuits of one component in one family."""
    tensor = family == "tensor"
    if isinstance(c, PrevToken):
        return prev_token(an, k, tensor)
    if isinstance(c, Detector):
        return detector(c, an, k, tensor)
    if isinstance(c, TrigramAnd):
        return trigram_and(an.info(c.rule), an, tensor)
    if isinstance(c, InductionHead):
        return induction(c, an, k, tensor)
    if isinstance(c, Readout):
        return readout(c, an, tensor)
    raise TypeError(type(c).__name__)


def prev_token(an: Analysis, k: Constants, tensor: bool) -> HeadCircuit:
    """Copy ``x[t-1]`` into ``prev:*``.

    Standard: score ``A [s = t-1]`` (one term per query position ``pos:t -> pos:t-1``),
    0 elsewhere; the weight on ``t-1`` is ``>= 1/(1 + t e^-A)``, so every ``prev``
    coordinate is off by at most ``n e^-A``, and ``A = M + ln n + ln C_max`` keeps that
    times the largest weight reading it below ``e^-M``. Tensor: factor 1 is the same
    shift table with weight 1, factor 2 is ``1`` (``one`` or ``bos`` at the key), so the
    pattern is exactly ``[s = t-1]``. OV: ``tok:v -> prev:v``; BOS carries no ``tok``,
    so at ``t = 1`` the prev subspace stays 0.
    """
    a = 1.0 if tensor else k.prev_score
    qk = [
        ({Direction("pos", t): a}, {Direction("pos", t - 1): 1.0})
        for t in range(1, an.spec.max_len + 1)
    ]
    ov = [
        ({tok(v, an): 1.0}, {Direction("prev", an.spec.vocab.tokens[v]): 1.0})
        for v in range(len(an.spec.vocab))
    ]
    qk2 = [({ONE: 1.0}, {ONE: 1.0, BOS_DIR: 1.0})] if tensor else []
    return HeadCircuit("prev-token", qk, ov, qk2)


def _band(lo: int, hi: int, max_len: int, w: float) -> list[tuple[Vec, Vec]]:
    """Terms of ``w [lo <= t - s <= hi, s >= 1]`` over one-hot positions."""
    out = []
    for t in range(1, max_len + 1):
        keys = [Direction("pos", s) for s in range(max(1, t - hi), t - lo + 1)]
        if keys:
            out.append(({Direction("pos", t): w}, _ind(keys)))
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
    w = 1.0 if tensor else k.det_score
    band = _band(lo, hi, an.spec.max_len, w)
    pairs = [
        (_ind([tok(v, an) for v in r.cue], w), _ind([tok(v, an) for v in r.anchor])) for r in rules
    ]
    ov = [(_ind([tok(v, an) for v in r.anchor]), {Direction("fire", r.name): 1.0}) for r in rules]
    if tensor:
        return HeadCircuit(c.name, band, ov, pairs)
    return HeadCircuit(c.name, band + pairs + [({ONE: 1.5 * w}, {BOS_DIR: 1.0})], ov)


def trigram_and(r: RuleInfo, an: Analysis, tensor: bool) -> list[UnitCircuit]:
    """``fire:r = [x[t-1] in A] AND [x[t] in B]``.

    Standard: ``relu([prev in A] + [x_t in B] - 1)`` is 1 iff both hold (both indicators
    are 0/1 up to the prev head's error). Tensor: ``[prev in A] * [x_t in B]`` exactly.
    """
    prev = _ind([Direction("prev", an.spec.vocab.tokens[v]) for v in r.anchor])
    cur = _ind([tok(v, an) for v in r.cue])
    out = {Direction("fire", r.name): 1.0}
    if tensor:
        return [UnitCircuit(f"and:{r.name}", prev, out, cur)]
    return [UnitCircuit(f"and:{r.name}", {**prev, **cur, ONE: -1.0}, out)]


def induction(c: InductionHead, an: Analysis, k: Constants, tensor: bool) -> HeadCircuit:
    """Copy the token after the earliest earlier occurrence of ``x[t]`` (K-composition).

    Keys are ``prev:*`` (written by the previous-token head), so position ``s'`` matches
    when ``x[s'-1] = x[t]`` and its value ``tok:x[s']`` is the follower.
    Standard: score ``C_m [match] - D s'`` plus ``B0 + K sum_g fire:g`` on BOS, with
    ``D = B0 = M + ln n``, ``C_m = D max_len + 2 B0``, ``K = C_m + B0 + M``: the earliest
    match beats BOS by ``>= B0`` and every later match by ``>= D``; without a match BOS
    beats everything by ``>= B0``; when a gate (a non-deterministic higher rule that can
    fire here) fires, BOS beats every match by ``>= M``. Tensor: factor 1 the match
    ``[x_t = prev_s]``, factor 2 ``(1 - sum_g fire:g) w(s)`` (the gate times the recency
    weight ``w(s) = 3**(max_len - s)``, :func:`~craft.compiler.analysis.recency`) at every
    non-BOS key. A polynomial cannot select the earliest match, but it can outweigh the
    rest: the copy coordinate of token ``v`` is ``c_v = sum w(s)`` over the matching keys
    ``s`` that hold ``v``; the earliest match ``e`` gives its follower at least ``w(e)``,
    and all later matches together at most ``w(e) / 2`` (a geometric series of ratio
    1/3), so ``c_{x[e]} - c_u >= w(e) / 2 >= 1/2`` for every other token ``u``.
    OV: ``tok:v -> copy[r]:v``; the unembedding boosts the copied token by ``C_r``, which
    :func:`~craft.compiler.constants.derive` sets to twice the range it must beat.
    """
    r = an.info(c.rule)
    vocab = an.spec.vocab.tokens
    w = 1.0 if tensor else k.ind_match
    match = [({tok(v, an): w}, {Direction("prev", vocab[v]): 1.0}) for v in sorted(r.cue)]
    ov = [
        ({tok(v, an): 1.0}, {Direction(f"copy[{r.name}]", vocab[v]): 1.0})
        for v in range(len(vocab))
    ]
    gate = [Direction("fire", g) for g in c.gates]
    keys = [Direction("pos", s) for s in range(1, an.spec.max_len + 1)]
    if tensor:
        weights = {d: recency(d.value, an.spec.max_len) for d in keys}
        return HeadCircuit(c.name, match, ov, [({ONE: 1.0, **_ind(gate, -1.0)}, weights)])
    step = ({ONE: -k.ind_step}, {d: float(d.value) for d in keys})
    bos = ({ONE: k.ind_bos, **_ind(gate, k.ind_gate)}, {BOS_DIR: 1.0})
    return HeadCircuit(c.name, match + [step, bos], ov)


def readout(c: Readout, an: Analysis, tensor: bool) -> list[UnitCircuit]:
    """Give rule r its exact distribution when it fires first.

    For each cue token v a unit ``[fire:r][x_t = v][no gate fires]`` writes
    ``read:r - tok:v`` (the unembedding maps ``read:r`` to ``ln q_r`` and ``tok:v`` to the
    direct-path row, which this removes); for each lower deterministic rule l that can
    fire with r a unit ``[fire:r][fire:l][no gate]`` writes ``-fire:l`` (removing l's
    boost). Standard: ``relu(fire:r + [x_t = v] - 1 - sum_g fire:g)``: a ReLU of 0/1
    features, exact up to their errors. Tensor: ``fire:r * [x_t = v]`` (no gating: a
    third factor would need another layer; the compiler states the condition instead).
    """
    r = an.info(c.rule)
    gate = _ind([Direction("fire", g) for g in c.gates], -1.0)
    fire_r = {Direction("fire", r.name): 1.0}
    units = []
    for v in sorted(r.cue):
        out = {Direction("read", r.name): 1.0, tok(v, an): -1.0}
        units.append(
            _and(
                f"{c.name}:{an.spec.vocab.tokens[v]}", fire_r, {tok(v, an): 1.0}, gate, out, tensor
            )
        )
    for l_name in c.cancels:
        fire_l = {Direction("fire", l_name): 1.0}
        units.append(
            _and(
                f"{c.name}:cancel:{l_name}",
                fire_r,
                fire_l,
                gate,
                {Direction("fire", l_name): -1.0},
                tensor,
            )
        )
    return units


def _and(name: str, a: Vec, b: Vec, gate: Vec, out: Vec, tensor: bool) -> UnitCircuit:
    if tensor:
        return UnitCircuit(name, a, out, b)
    return UnitCircuit(name, {**a, **b, **gate, ONE: -1.0}, out)
