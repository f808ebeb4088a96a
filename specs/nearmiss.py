"""Contexts at the edges of a spec's conditions, and long sequences with endings planted
at any position.

An off-by-one lives where a condition *almost* holds: the anchor one token outside a
skip-bigram's window, a trigram whose first token is another token of its category, an
induction token whose earlier copy sits just before it, a context where two rules hold at
once and priority decides. Such contexts belong to whichever rule really fires there
(:func:`specs.truth.next_dist_exact` says which), and must be checked under that rule.

* :func:`ending`: tokens that make a rule's condition hold, drawn over the whole range
  the spec allows (every window distance, induction copies any distance back);
* :func:`near_endings`: for one rule, every boundary the spec defines: just outside
  and on the edge of the condition;
* :func:`overlay`: a context edited (never its last token) so that another rule's
  condition holds at its end as well: a priority boundary;
* :func:`planted`: sequences of ``max_len`` tokens with such endings written at random
  end positions, so that every prefix ending there is a context with the rule's tail
  at an early or a late position (a causal model scores every prefix in one pass).

Everything is drawn with a numpy Generator: the result depends only on its state.
"""

from __future__ import annotations

import numpy as np

from specs.model import Bigram, Induction, Rule, SkipBigram, Spec, Trigram


def _pick(rng: np.random.Generator, ids) -> int:
    return int(rng.choice(sorted(ids)))


def _kin(spec: Spec, members: frozenset[int]) -> frozenset[int]:
    """Tokens sharing a category with some member but not members themselves."""
    names = spec.vocab.tokens
    cats = {spec.vocab.category_of(names[i]) for i in members}
    kin = frozenset().union(*(spec.vocab.resolve(c) for c in cats)) if cats else frozenset()
    return kin - members


def _filler(spec: Spec, rng: np.random.Generator, n: int, avoid: frozenset[int]) -> list[int]:
    """``n`` random tokens, none in ``avoid`` (all tokens when that leaves none)."""
    allowed = sorted(set(range(len(spec.vocab))) - avoid) or list(range(len(spec.vocab)))
    return [allowed[i] for i in rng.integers(0, len(allowed), size=n)]


def ending(spec: Spec, rule: Rule, rng: np.random.Generator) -> list[int]:
    """Tokens a context may end with for ``rule``'s condition to hold: a key; a trigram
    pair; anchor, gap (any distance in the window), cue; or ``x ... x`` with the earlier
    copy anywhere up to ``max_len`` back (short gaps as often as long ones)."""
    if isinstance(rule, Bigram):
        return [_pick(rng, rule.keys)]
    if isinstance(rule, Trigram):
        return [_pick(rng, rule.first), _pick(rng, rule.second)]
    if isinstance(rule, SkipBigram):
        gap = int(rng.integers(rule.window[0], rule.window[1] + 1))
        return [
            _pick(rng, rule.anchor),
            *_filler(spec, rng, gap - 1, frozenset()),
            _pick(rng, rule.cue),
        ]
    token = _pick(rng, rule.on)
    most = max(0, spec.max_len - 2)
    top = min(4, most) if rng.random() < 0.5 else most
    middle = int(rng.integers(0, top + 1))
    return [token, *_filler(spec, rng, middle, frozenset({token})), token]


def near_endings(spec: Spec, rule: Rule, rng: np.random.Generator) -> list[list[int]]:
    """Endings at every boundary of ``rule``'s condition (those the vocabulary allows).

    * bigram: a token of a key's category that is not a key;
    * trigram: first or second token replaced by another of its category, one token
      between the pair, the second token alone right after BOS;
    * skip-bigram: the anchor at distance ``lo - 1`` and ``hi + 1`` (outside) and at
      ``lo`` and ``hi`` (the edges inside), the gap free of anchors; the cue or the
      anchor replaced by another token of its category;
    * induction: ``x x`` (the earlier copy at the last position before), ``y ... x``
      with ``y`` another token of ``x``'s category, two earlier copies with
      different followers, and the first copy against 2 to 6 later copies that all
      have another follower (the earliest must win in every case).
    """
    if isinstance(rule, Bigram):
        kin = _kin(spec, rule.keys)
        return [[_pick(rng, kin)]] if kin else []
    if isinstance(rule, Trigram):
        return _near_trigram(spec, rule, rng)
    if isinstance(rule, SkipBigram):
        return _near_skip(spec, rule, rng)
    return _near_induction(spec, rule, rng)


def _near_trigram(spec: Spec, rule: Trigram, rng: np.random.Generator) -> list[list[int]]:
    a, b = _pick(rng, rule.first), _pick(rng, rule.second)
    out = [[a, *_filler(spec, rng, 1, rule.first), b], [b]]
    kin_a, kin_b = _kin(spec, rule.first), _kin(spec, rule.second)
    if kin_a:
        out.append([_pick(rng, kin_a), b])
    if kin_b:
        out.append([a, _pick(rng, kin_b)])
    return out


def _near_skip(spec: Spec, rule: SkipBigram, rng: np.random.Generator) -> list[list[int]]:
    lo, hi = rule.window
    anchor, cue = _pick(rng, rule.anchor), _pick(rng, rule.cue)

    def at(distance: int, a: int = anchor, c: int = cue) -> list[int]:
        return [a, *_filler(spec, rng, distance - 1, rule.anchor), c]

    out = [at(d) for d in (lo - 1, lo, hi, hi + 1) if 1 <= d < spec.max_len]
    inside = int(rng.integers(lo, hi + 1))
    kin_cue, kin_anchor = _kin(spec, rule.cue), _kin(spec, rule.anchor)
    if kin_cue:
        out.append(at(inside, c=_pick(rng, kin_cue)))
    if kin_anchor:
        out.append(at(inside, a=_pick(rng, kin_anchor)))
    return out


def _near_induction(spec: Spec, rule: Induction, rng: np.random.Generator) -> list[list[int]]:
    x = _pick(rng, rule.on)
    out = [[x, x]]
    kin = _kin(spec, rule.on) | (rule.on - {x})
    if kin:
        gap = _filler(spec, rng, int(rng.integers(0, 4)), frozenset({x}))
        out.append([_pick(rng, kin), *gap, x])
    (f1,) = _filler(spec, rng, 1, frozenset({x}))
    (f2,) = _filler(spec, rng, 1, frozenset({x, f1}))
    gap = _filler(spec, rng, int(rng.integers(0, 4)), frozenset({x}))
    out.append([x, f1, *gap, x, f2, x])
    many = int(rng.integers(2, 7))  # the earliest against many later copies of another
    out.append([x, f1, *[x, f2] * many, x])
    return out


def overlay(spec: Spec, rule: Rule, ctx: list[int], rng: np.random.Generator) -> list[int] | None:
    """``ctx`` edited before its last token so that ``rule``'s condition also holds at its
    end (None when the last token cannot satisfy it). Whichever of the rules holding
    there comes first in priority fires: these are the priority boundaries."""
    if not ctx:
        return None
    last, out = ctx[-1], list(ctx)
    if isinstance(rule, Bigram):
        return out if last in rule.keys else None
    if isinstance(rule, Trigram):
        if last not in rule.second:
            return None
        return [*out[:-2], _pick(rng, rule.first), last]
    if isinstance(rule, SkipBigram):
        if last not in rule.cue:
            return None
        d = int(rng.integers(rule.window[0], rule.window[1] + 1))
        if len(out) <= d:
            out = _filler(spec, rng, d + 1 - len(out), frozenset()) + out
        out[-1 - d] = _pick(rng, rule.anchor)
        return out
    if last not in rule.on:
        return None
    if len(out) < 3:
        out = _filler(spec, rng, 3 - len(out), frozenset()) + out
    out[int(rng.integers(0, len(out) - 2))] = last
    return out


def boundary_endings(spec: Spec, rng: np.random.Generator) -> list[list[int]]:
    """One round of boundary endings over every rule: each rule's near endings, and each
    rule's ending overlaid with every other rule's condition."""
    out: list[list[int]] = []
    for rule in spec.rules:
        out += near_endings(spec, rule, rng)
        base = ending(spec, rule, rng)
        for other in spec.rules:
            if other is not rule:
                both = overlay(spec, other, base, rng)
                if both is not None and len(both) <= spec.max_len:
                    out.append(both)
    return [e for e in out if 0 < len(e) <= spec.max_len]


def planted(
    spec: Spec,
    rng: np.random.Generator,
    n: int,
    endings,
    per_sequence: int = 8,
) -> tuple[np.ndarray, list[list[int]]]:
    """``n`` random sequences of ``max_len`` tokens with up to ``per_sequence`` endings
    written into each, each ending at a random position (later ones overwrite earlier).

    Args:
        endings: ``rng -> list of endings`` (e.g. one rule's :func:`ending`, or
            :func:`boundary_endings`).

    Returns:
        tokens int64 ``[n, max_len]`` (no BOS) and, per sequence, the end positions
        ``p`` (1-based: the context is ``tokens[i, :p]``) of the endings written.
    """
    length, vocab = spec.max_len, len(spec.vocab)
    tokens = rng.integers(0, vocab, size=(n, length))
    ends: list[list[int]] = []
    for i in range(n):
        mine = []
        options = endings(rng)
        for _ in range(per_sequence if options else 0):
            e = options[int(rng.integers(len(options)))]
            end = int(rng.integers(len(e), length + 1))
            tokens[i, end - len(e) : end] = e
            mine.append(end)
        ends.append(mine)
    return tokens.astype(np.int64), ends
