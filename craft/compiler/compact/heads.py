"""Attention-only constructions on compact codes, each a head of named QK and OV terms.

Notation: query position ``t`` (token ``x_t``), key position ``s``; ``d = t - s``; a
score is the softmax logit of key ``s`` for query ``t``; BOS is the key at position 0
and carries no position code, so its score is set by a separate term. ``m`` is the
softmax margin of :mod:`craft.compiler.compact.budget`: every wrong key scores at least
``m`` below the right one, so the weight it leaks is at most ``e^-m``.

Positions. With ``t = c + w u_t`` and ``s = c + w u_s`` every score below is a
polynomial of degree <= 2 in ``u_t`` and in ``u_s``, i.e. a bilinear form in
``(1, u_t, u_t^2) x (1, u_s, u_s^2)``: at most three head dimensions (one per key
monomial; :func:`quadratic`). ``1`` is ``pos:1`` (1 at every non-BOS position).
Float32: the monomials reach ``|coefficient| * w^2 / 4``; their rounding (``2^-24``
relative each) is what limits ``max_len`` (see ``build.score_scale``).

Tokens. Cue sets are exact (unions of classes); an anchor or a previous token is read
from a ``(category, idx)`` code whose worst collision ``mu`` (largest value of the
indicator on a non-member, 1/2 for a single token) is computed, and each construction
divides its margin by ``1 - mu``.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from craft.compiler.compact.codes import Codes, Vec, _add, scale
from craft.compiler.primitives import HeadCircuit
from craft.models.layout import BOS_DIR, Direction

_UT, _US, _T, _S = sp.symbols("u_t u_s t s")


@dataclass(frozen=True)
class PosFrame:
    """``u = (t - centre) / width``: positions 1..max_len map into about [-1/2, 1/2]."""

    centre: float
    width: float

    def u(self, t: int) -> float:
        return (t - self.centre) / self.width


def frame(max_len: int) -> PosFrame:
    return PosFrame((max_len + 1) / 2, float(max_len))


def _mono(codes: Codes, i: int) -> Vec:
    return [
        {Direction("pos", 1): 1.0},
        {Direction("pos", "u"): 1.0},
        {Direction("pos", "u2"): 1.0},
    ][i]


def quadratic(codes: Codes, pf: PosFrame, f: sp.Expr) -> list[tuple[Vec, Vec]]:
    """Terms whose score at non-BOS keys is exactly ``f(t, s)`` (degree <= 2 in each)."""
    g = sp.expand(f.subs({_T: pf.centre + pf.width * _UT, _S: pf.centre + pf.width * _US}))
    poly = sp.Poly(g, _UT, _US)
    terms = []
    for j in range(3):
        q = _add(
            *(scale(_mono(codes, i), float(poly.coeff_monomial(_UT**i * _US**j))) for i in range(3))
        )
        if q:
            terms.append((q, _mono(codes, j)))
    return terms


def at_bos(codes: Codes, pf: PosFrame, g: sp.Expr) -> tuple[Vec, Vec]:
    """The term giving BOS the score ``g(t)`` (a polynomial of degree <= 2 in t)."""
    poly = sp.Poly(sp.expand(g.subs(_T, pf.centre + pf.width * _UT)), _UT)
    q = _add(*(scale(_mono(codes, i), float(poly.coeff_monomial(_UT**i))) for i in range(3)))
    return (q, {BOS_DIR: 1.0})


def prev_token(codes: Codes, pf: PosFrame, a: float) -> HeadCircuit:
    """Copy ``x[t-1]``'s prev code into ``prevcat``/``previdx``.

    Score ``-a (s - (t-1))^2`` at every key, BOS included as position 0: the key
    ``t - 1`` scores 0 and every other key ``<= -a``, so the weight off ``t-1`` is at most
    ``t e^-a``. OV: ``cls:c -> prevcat:K`` for the classes of each carried category K and
    ``idx:i -> previdx:i``: the value of token v is exactly its prev code; BOS has none,
    so at ``t = 1`` the prev code is 0.
    """
    f = -a * (_S - (_T - 1)) ** 2
    qk = quadratic(codes, pf, f) + [at_bos(codes, pf, f.subs(_S, 0))]
    ov = []
    for cat in codes.prev_cats:
        src = {codes.cls(c): 1.0 for c, m in enumerate(codes.classes) if codes.cat_of[m[0]] == cat}
        ov.append((src, {Direction("prevcat", cat): 1.0}))
    if codes.prev_idx:
        n_idx = len(codes.layout.named("idx"))
        ov += [({Direction("idx", i): 1.0}, {Direction("previdx", i): 1.0}) for i in range(n_idx)]
    return HeadCircuit("prev-token", qk, ov)


@dataclass(frozen=True)
class DetectorRule:
    """One rule of a detector head: exact cue set, anchor functional, what it writes."""

    cue: Vec  # exact indicator over token classes (query side)
    anchor: Vec  # approximate indicator over token codes (key side)
    write: Vec  # written when the rule fires (an output code times its boost, or read:r)


def detector(
    name: str,
    codes: Codes,
    pf: PosFrame,
    window: tuple[int, int],
    rules: list[DetectorRule],
    a: float,
    c: float,
    theta: float,
    value: list[tuple[Vec, Vec]],
) -> HeadCircuit:
    """``x_t`` in rule r's cue and an anchor of r within ``lo <= d <= hi``.

    Score ``a band(d) + c sum_r cue_r(x_t) anchor_r(x_s)`` with ``band(d) = -(d-lo)(d-hi)``
    (0 at the window's edges, at most ``Q = ((hi-lo)/2)^2`` inside, at most ``-W``,
    ``W = hi - lo + 1``, outside), and ``theta`` on BOS. Cues of a head are disjoint and
    exact, so only r's term is live. An anchor in the window scores ``>= c``; a
    non-anchor in the window ``<= a Q + c mu``; an anchor outside ``<= c - a W``; with
    ``a W >= 2m``, ``c (1 - mu) >= a Q + 2m`` and ``theta = c - m`` BOS is beaten by ``m``
    when an anchor is in the window and beats everything else by ``m`` otherwise. All of
    r's anchors carry the same value, so several anchors give the OR (as one-hot).
    OV (``value``): a map exact on the anchors (solved in ``budget``).
    """
    lo, hi = window
    band = -((_T - _S) - lo) * ((_T - _S) - hi)
    qk = quadratic(codes, pf, a * band)
    qk += [(scale(r.cue, c), r.anchor) for r in rules]
    qk.append((scale(codes.one(), theta), {BOS_DIR: 1.0}))
    return HeadCircuit(name, qk, value)


def own_position(codes: Codes, pf: PosFrame, c_self: float) -> list[tuple[Vec, Vec]]:
    """``-c_self (s - t)^2``: 0 at the query's own position, ``<= -c_self`` elsewhere."""
    return quadratic(codes, pf, -c_self * (_S - _T) ** 2)


def trigram_head(
    name: str,
    codes: Codes,
    pf: PosFrame,
    pairs: list[tuple[Vec, Vec]],
    out: list[tuple[Vec, Vec]],
    a: float,
    theta: float,
    c_self: float,
) -> HeadCircuit:
    """``(x[t-1], x[t])`` is a trigram pair: attend to ``t`` itself, else to BOS.

    Score ``a sum_r cue_r(x_t) anchor_r(prev_s) - c_self (s-t)^2``, BOS ``theta``. At
    ``s = t`` the pair term is ``a`` when ``x[t-1]`` is an anchor of x_t's rule and
    ``<= a mu`` otherwise; other keys lose ``c_self``. With ``a (1 - mu) >= 2m``,
    ``theta = a - m`` and ``c_self = a (phi - 1) + 2m`` (``phi`` the largest value of an
    anchor functional) the head attends to ``t`` exactly when the pair matches. OV:
    ``cls:<cue class> -> boost * out(target)`` (a head's rules give each cue class one
    target, so the value at ``t`` names the answer).
    """
    qk = own_position(codes, pf, c_self) + [(scale(q, a), k) for q, k in pairs]
    qk.append((scale(codes.one(), theta), {BOS_DIR: 1.0}))
    return HeadCircuit(name, qk, out)


def readout_head(
    name: str,
    codes: Codes,
    pf: PosFrame,
    cue: Vec,
    anchor: Vec,
    out: list[tuple[Vec, Vec]],
    a: float,
    theta: float,
    c_self: float,
) -> HeadCircuit:
    """A non-deterministic trigram ``(anchor, cue)``: give it its distribution.

    Score ``a (cue(x_t) + anchor(prev_t))`` at every non-BOS key (a query-side sum) plus
    ``-c_self (s - t)^2``, and ``theta = 2a - m`` on BOS. Both hold: ``t`` scores ``2a``;
    one holds: ``<= a (1 + mu)``, so ``a (1 - mu) >= 2m`` puts BOS ``m`` above it.
    OV at ``t``: ``cls:c -> -cls:c`` for every cue class (the unembedding reads ``cls:c``
    as the direct-path row of c, so this cancels it) and ``one -> read:r`` (read as
    ``ln q_r``): the logits become ``ln q_r`` up to the leaked weight.
    """
    qk = own_position(codes, pf, c_self)
    qk.append((_add(scale(cue, a), scale(anchor, a)), codes.one()))
    qk.append((scale(codes.one(), theta), {BOS_DIR: 1.0}))
    return HeadCircuit(name, qk, out)


def induction(
    name: str,
    codes: Codes,
    cue_cats: dict[str, Vec],
    cue_idx: dict[int, Vec],
    gate: Vec,
    pf: PosFrame,
    c_m: float,
    d: float,
    b0: float,
    k: float,
    ov: list[tuple[Vec, Vec]],
) -> HeadCircuit:
    """Copy the token after the earliest earlier occurrence of ``x_t`` (K-composition).

    Match (keys are prev codes, so key ``s`` matches when ``x[s-1] = x_t``):
    ``C_m (1/2 sum_K [cat x_t = K][prevcat_s = K] + 1/2 sum_i [idx x_t = i][previdx_s = i])``
    over cue tokens: 1 on a match, ``<= 1/2`` on a collision. Plus ``-d s`` (earlier keys
    win by ``d`` per position) and ``b0 + k gate`` on BOS. With ``d = m``,
    ``C_m = 2 (d n + 2m)``, ``b0 = C_m/2 + m``, ``k = C_m - b0 + m``: the earliest match beats
    every later one by ``d`` and BOS by ``m``; without a match BOS beats every key by
    ``m``; when the gate (a higher non-deterministic rule) fires BOS beats every match by
    ``m``. OV: ``tok -> out`` (category and index copied), times the boost.
    """
    qk = [(scale(q, c_m * 0.5), {Direction("prevcat", cat): 1.0}) for cat, q in cue_cats.items()]
    qk += [(scale(q, c_m * 0.5), {Direction("previdx", i): 1.0}) for i, q in cue_idx.items()]
    s_lin = {Direction("pos", 1): pf.centre, Direction("pos", "u"): pf.width}
    qk.append((scale(codes.one(), -d), s_lin))
    qk.append((_add(scale(codes.one(), b0), scale(gate, k)), {BOS_DIR: 1.0}))
    return HeadCircuit(name, qk, ov)


def copy(
    name: str, codes: Codes, pf: PosFrame, offset: int, cue: Vec, other: Vec, m: float, ov
) -> HeadCircuit:
    """Copy ``x[t - offset]`` when ``x_t`` is a cue (``cue``/``other``: the exact class
    indicators of the cue and of every other token).

    Score ``-2m (s - (t - offset))^2`` at every non-BOS key and ``m ([x_t not a cue] -
    [x_t a cue])`` at BOS. At a cue with ``t > offset`` the key ``t - offset`` scores 0,
    BOS ``-m`` and every other key ``<= -2m``; at a cue with ``t <= offset`` every key
    scores ``<= -2m`` (the nearest lies a whole position past the peak) and BOS ``-m``;
    at any other token BOS scores ``m``, the key ``t - offset`` 0 and the rest ``<= -2m``.
    So the intended key (BOS: nothing copied) leads by ``m`` everywhere. OV: the key's
    category and index into the output code, times the boost (as induction).
    """
    f = -2 * m * (_S - (_T - offset)) ** 2
    bos = _add(scale(cue, -m), scale(other, m))
    return HeadCircuit(name, quadratic(codes, pf, f) + [(bos, {BOS_DIR: 1.0})], ov)


def copied_token_ov(codes: Codes, boost: float) -> list[tuple[Vec, Vec]]:
    """OV of a head that copies the attended token: its category's classes into
    ``outcat``, its index into ``outidx``, times the boost (induction, copy)."""
    ov = [
        (
            {codes.cls(c): 1.0 for c, mm in enumerate(codes.classes) if codes.cat_of[mm[0]] == k},
            {Direction("outcat", k): boost},
        )
        for k in codes.out_cats
    ]
    return ov + [
        ({d: 1.0}, {Direction("outidx", d.value): boost}) for d in codes.layout.named("idx")
    ]
