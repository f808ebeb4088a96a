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

from specs.kinds import kind_of
from specs.model import Rule, Spec


def ending(spec: Spec, rule: Rule, rng: np.random.Generator) -> list[int]:
    """Tokens a context may end with for ``rule``'s condition to hold, drawn over the
    whole range the spec allows (each kind's ``ending`` hook): a key; a trigram pair;
    anchor, gap (any distance in the window), cue; or ``x ... x`` with the earlier copy
    anywhere up to ``max_len`` back (short gaps as often as long ones); ..."""
    return kind_of(rule).ending(spec, rule, rng)


def near_endings(spec: Spec, rule: Rule, rng: np.random.Generator) -> list[list[int]]:
    """Endings at every boundary of ``rule``'s condition (those the vocabulary allows),
    each kind's ``near_endings`` hook, e.g.

    * bigram: a token of a key's category that is not a key;
    * trigram: first or second token replaced by another of its category, one token
      between the pair, the second token alone right after BOS;
    * skip-bigram: the anchor at distance ``lo - 1`` and ``hi + 1`` (outside) and at
      ``lo`` and ``hi`` (the edges inside), the gap free of anchors; the cue or the
      anchor replaced by another token of its category;
    * induction: ``x x`` (the earlier copy at the last position before), ``y ... x``
      with ``y`` another token of ``x``'s category, two earlier copies with
      different followers, and the first copy against 2 to 6 later copies that all
      have another follower (the earliest must win in every case);
    * bracket: the cue with an empty stack (after BOS, ``( )``, unmatched closers,
      balanced or crossed-then-closed nesting) and with one bracket left open (``( .``,
      deep nesting closed but one, ``( [ ) .``, a wrong closer ignored);
    * copy: the cue at ``t = offset`` (it would copy BOS), distinct tokens at distances
      ``offset`` and ``offset + 1``, a cue copied, a non-cue of the cue's category.
    """
    return kind_of(rule).near_endings(spec, rule, rng)


def overlay(spec: Spec, rule: Rule, ctx: list[int], rng: np.random.Generator) -> list[int] | None:
    """``ctx`` edited before its last token so that ``rule``'s condition also holds at its
    end (None when the last token cannot satisfy it). Whichever of the rules holding
    there comes first in priority fires: these are the priority boundaries."""
    if not ctx:
        return None
    return kind_of(rule).overlay(spec, rule, ctx, rng)


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
