"""Test contexts of the ``bracket`` kind (its ``targeted_ending``, ``ending``,
``near_endings`` and ``overlay`` hooks, :mod:`specs.kinds.bracket`).

Firing endings leave brackets open before a cue: nested (to depth 8 to 16 half the
time, when ``max_len`` allows) and partly closed, crossed (``( [ ) ]``: the ``)`` is
ignored, ``(`` stays open), or after unmatched closers. Near endings sit on both sides
of the condition: the cue with an empty stack (right after BOS, after ``( )``, after
unmatched closers only, after balanced nesting, after a crossed group closed in full)
and with exactly one bracket left open (``( .``, the deepest nesting closed but one, a
crossed group, a wrong closer ignored), and an open bracket before a token of the
cue's category that is not a cue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from specs.kinds.base import filler, kin, pick

if TYPE_CHECKING:
    from specs.kinds.bracket import Bracket
    from specs.model import Spec


def _nested(rule: Bracket, rng: np.random.Generator, room: int) -> list[int]:
    """Openers to depth 1..3 or 8..16 (at most ``room``), the innermost few closed."""
    depth = int(rng.integers(8, 17)) if rng.random() < 0.5 else int(rng.integers(1, 4))
    depth = min(depth, room)
    opened = [pick(rng, rule.openers) for _ in range(depth)]
    closes = int(rng.integers(0, min(depth - 1, room - depth) + 1))
    return opened + [rule.closer_of[o] for o in reversed(opened)][:closes]


def _crossed(rule: Bracket, rng: np.random.Generator) -> list[int]:
    """``o1 o2 c1 c2``: ``c1`` is not the top's closer (ignored), ``c2`` closes ``o2``."""
    first, second = (rule.pairs[i] for i in rng.choice(len(rule.pairs), 2, replace=False))
    return [first[0], second[0], first[1], second[1]]


def _unmatched(rule: Bracket, rng: np.random.Generator, room: int) -> list[int]:
    """Closers with nothing to close, an opener, then a closer of another pair."""
    out = [pick(rng, rule.closers) for _ in range(int(rng.integers(1, min(3, room - 1) + 1)))]
    opener = pick(rng, rule.openers)
    out.append(opener)
    wrong = rule.closers - {rule.closer_of[opener]}
    if wrong and len(out) < room:
        out.append(pick(rng, wrong))
    return out


def firing(spec: Spec, rule: Bracket, rng: np.random.Generator) -> list[int]:
    """Tokens after which ``rule`` fires (from BOS, or after any prefix that leaves no
    higher rule firing): brackets left open, up to two plain tokens, a cue."""
    room = spec.max_len - 1  # tokens before the cue
    if room < 1:
        return [pick(rng, rule.cue)]
    shape = int(rng.integers(3))
    if shape == 1 and len(rule.pairs) >= 2 and room >= 4:
        body = _crossed(rule, rng)
    elif shape == 2 and room >= 2:
        body = _unmatched(rule, rng, room)
    else:
        body = _nested(rule, rng, room)
    brackets = rule.openers | rule.closers
    plain = filler(spec, rng, int(rng.integers(0, min(2, room - len(body)) + 1)), brackets)
    return [*body, *plain, pick(rng, rule.cue)]


def near(spec: Spec, rule: Bracket, rng: np.random.Generator) -> list[list[int]]:
    """Endings on both sides of the condition (see the module docstring)."""
    cue, opener = pick(rng, rule.cue), pick(rng, rule.openers)
    closer = rule.closer_of[opener]
    out = [[cue], [opener, closer, cue], [closer, cue], [opener, cue]]
    depth = min(8, (spec.max_len - 1) // 2)
    if depth >= 1:
        opened = [pick(rng, rule.openers) for _ in range(depth)]
        closing = [rule.closer_of[o] for o in reversed(opened)]
        out.append([*opened, *closing, cue])  # balanced: empty at the cue
        out.append([*opened, *closing[:-1], cue])  # all but the outermost closed
    if len(rule.pairs) >= 2:
        (o1, c1), (o2, c2) = (rule.pairs[i] for i in rng.choice(len(rule.pairs), 2, replace=False))
        out.append([o1, o2, c1, cue])  # c1 ignored: c2 expected
        out.append([o1, o2, c1, c2, c1, cue])  # crossed, then closed in full
        out.append([o1, c2, cue])  # a wrong closer is ignored
    others = kin(spec, rule.cue) - rule.openers - rule.closers
    if others:
        out.append([opener, pick(rng, others)])
    return [e for e in out if len(e) <= spec.max_len]


def overlay(
    spec: Spec, rule: Bracket, ctx: list[int], rng: np.random.Generator
) -> list[int] | None:
    """An opener written before the last token (a cue), where no later token closes it
    (else right before the cue)."""
    if ctx[-1] not in rule.cue:
        return None
    out = list(ctx)
    if len(out) < 2:
        out = filler(spec, rng, 2 - len(out), frozenset()) + out
    out[int(rng.integers(0, len(out) - 1))] = pick(rng, rule.openers)
    if not rule.stack(out[:-1]):  # a later closer closed it
        out[-2] = pick(rng, rule.openers)
    return out
