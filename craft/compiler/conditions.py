"""Where a model cannot be exact, and the contexts on which its bound holds.

A polynomial network of fixed depth sums where the semantics asks for an OR, a first
occurrence or a three-way AND. The one-hot tensor compiler adds the layers that make
those exact (:func:`craft.compiler.kinds.shared.exact_readouts`); under ``--layers`` it
may not, and the compact one does not. Each place left inexact becomes a
:class:`Condition`, printed at compile time, and the reported bound is guaranteed on
every context where all conditions hold (tests check it there).

* ``followers-agree`` (the compact tensor compiler only): tensor induction sums over all
  earlier occurrences of ``x[t]``; exact when they were all followed by the same token
  (the spec wants the earliest). The one-hot tensor compiler weighs each occurrence by
  a recency factor that makes the earliest outweigh the rest
  (:func:`craft.compiler.kinds.induction.induction`), so it states no such condition.
* ``single-anchor`` (one readout layer): a tensor detector counts anchors in the window;
  a non-deterministic skip-bigram (or one used as a gate) is exact with at most one.
* ``not-together`` (one readout layer): a tensor readout cannot be switched off by a
  second non-deterministic rule in the same layer (that needs a degree-3 product).

A rule kind may state conditions of its own in every family (its
:meth:`~craft.compiler.kinds.base.RuleKind.conditions`, e.g. bracket rules'
``brackets-match``): such a condition names its ``owner`` kind, which describes and
checks it (:meth:`~craft.compiler.kinds.base.RuleKind.describe_condition`,
``condition_holds``, ``condition_mask``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from craft.compiler.analysis import Analysis
from craft.compiler.kinds import kind_named

ConditionKind = Literal["followers-agree", "single-anchor", "not-together"]


@dataclass(frozen=True)
class Condition:
    """A place where a model is not exact: ``kind`` names it, ``rules`` the rules it is
    about; ``owner`` the rule kind (its name) that describes and checks it, or None for
    the tensor family's own (``kind`` one of :data:`ConditionKind`)."""

    kind: str
    rules: tuple[str, ...]
    owner: str | None = None

    def describe(self) -> str:
        if self.owner is not None:
            return kind_named(self.owner).describe_condition(self)
        if self.kind == "followers-agree":
            return (
                f"{self.rules[0]}: earlier occurrences of the current token were all followed "
                "by the same token (bilinear attention sums, it cannot pick the earliest)"
            )
        if self.kind == "single-anchor":
            return f"{self.rules[0]}: at most one anchor in the window (a count, not an OR)"
        return f"{self.rules[0]} and {self.rules[1]} do not fire together"

    def holds(self, an: Analysis, ctx: list[int]) -> bool:
        if self.owner is not None:
            return kind_named(self.owner).condition_holds(self, an, ctx)
        rules = [an.info(n) for n in self.rules]
        if self.kind == "not-together":
            return not (rules[0].holds(ctx) and rules[1].holds(ctx))
        r = rules[0]
        if not r.holds(ctx):
            return True
        if self.kind == "single-anchor":
            return r.anchor_count(ctx) <= 1
        followers = {ctx[s + 1] for s in range(len(ctx) - 1) if ctx[s] == ctx[-1]}
        return len(followers) <= 1


def conditions(an: Analysis, family: str, earliest: bool = True) -> tuple[Condition, ...]:
    """Every condition a model of ``an`` in ``family`` states: each kind's own
    (:meth:`~craft.compiler.kinds.base.RuleKind.conditions`), then the tensor family's."""
    out: list[Condition] = []
    for r in an.rules:
        out += r.rule_kind.conditions(r, an)
    if family == "tensor":
        out += tensor_conditions(an, earliest)
    return tuple(dict.fromkeys(out))


def tensor_conditions(an: Analysis, earliest: bool = False) -> tuple[Condition, ...]:
    """The conditions under which a tensor model of ``an`` is exact; ``earliest``: its
    induction weighs the earliest occurrence above the rest (no ``followers-agree``).
    Each rule's kind states its own
    (:meth:`~craft.compiler.kinds.base.RuleKind.tensor_conditions`)."""
    out: list[Condition] = []
    for r in an.rules:
        out += r.rule_kind.tensor_conditions(r, an, earliest)
    return tuple(dict.fromkeys(out))


def count_harmless(an: Analysis, r) -> bool:
    """Whether a non-deterministic skip-bigram's readout is exact at any anchor count.

    With ``k`` anchors in its window the readout writes ``k (read:r - tok:v)``, so after
    cue ``v`` the logits are ``k Lq - (k - 1) Lrow`` instead of ``Lq``. Here ``Lq`` and
    ``Lrow`` are the compiler's log-probabilities of the rule's ``q`` and of ``v``'s bigram
    row (:func:`~craft.compiler.analysis.log_probs`: ``ln p`` on the support,
    ``ln(min p) - G`` off it).

    - On the support of ``q``, the logits are ``Lq`` plus a constant exactly when
      ``Lrow = Lq + c`` there, i.e. when the row, restricted to that support, is
      proportional to ``q``. The check uses exact fractions.
    - Off that support, a token ``u`` trails the least likely support token by
      ``k G + (k - 1)(Lrow(u) - ln f)``, where ``f`` is the row's least probability on
      the support. That is at least ``G`` when ``Lrow(u) >= ln f - G``. For ``u`` in the
      row's support this holds when ``row(u) >= f``. For ``u`` outside it
      (``Lrow(u) = ln(min row) - G``) it holds when the row's minimum is ``f``. Both come
      to one condition: no row entry below ``f``.
    - The readout's other writes must not count either. No lower deterministic rule may
      be cancelled (``-k fire:l`` would push its target below), and ``r`` may gate no
      other rule (``1 - k`` would flip the gate).

    ``skip_trigram``'s ``blue-cue`` (berry and cherry 1/2 each, after a CUE row uniform on
    ANS) is such a rule: it is exact with any number of blues in its window.
    """
    if any(x.deterministic for x in an.lower_cofiring(r)):
        return False  # its readout cancels them, k times
    if any(r.name in (g.name for g in an.gates(x)) for x in an.rules if x is not r):
        return False
    support = dict(r.next.items)
    for v in r.cue:
        row = dict(an.direct[v].items)
        if any(u not in row for u in support):
            return False
        floor = min(row[u] for u in support)
        if len({row[u] / q for u, q in support.items()}) != 1 or min(row.values()) < floor:
            return False
    return True


def stated(an: Analysis, meta: dict) -> tuple[Condition, ...]:
    """The conditions a compiled tensor model states (``meta["conditions"]``, their
    descriptions), as Condition objects to evaluate: each compiler states its own (the
    one-hot compiler no ``followers-agree``, the compact one with it)."""
    said = set(meta.get("conditions") or ())
    every = conditions(an, "tensor", earliest=False)
    return tuple(c for c in every if c.describe() in said)


def counts(an: Analysis, r) -> bool:
    """Whether ``r``'s tensor-family fire feature is a count that can exceed 1 (a
    skip-bigram with a window wider than one token), not an OR."""
    return r.max_count(an.spec.max_len) > 1


def all_hold(conds: tuple[Condition, ...], an: Analysis, ctx: list[int]) -> bool:
    return all(c.holds(an, ctx) for c in conds)


def condition_mask(conds: tuple[Condition, ...], an: Analysis, tokens: np.ndarray) -> np.ndarray:
    """``bool [B, T]``: whether every condition holds at each position of ``tokens``.

    ``tokens`` is ``[B, T]`` with BOS at column 0; column ``t`` is the context
    ``tokens[b, 1:t+1]``. Followers-agree is tracked incrementally (one pass per row).
    """
    b, t = tokens.shape
    out = np.ones((b, t), dtype=bool)
    if not conds:
        return out
    owned = [c for c in conds if c.owner is not None]
    masks = [kind_named(c.owner).condition_mask(c, an, tokens) for c in owned]
    for mask in masks:
        if mask is not None:
            out &= mask
    rest = tuple(c for c, m in zip(owned, masks, strict=True) if m is None)
    simple = tuple(c for c in conds if c.owner is None and c.kind != "followers-agree") + rest
    followers = [an.info(c.rules[0]) for c in conds if c.kind == "followers-agree"]
    if not simple and not followers:
        return out
    for i in range(b):
        row = [int(x) for x in tokens[i, 1:]]
        seen: dict[int, set[int]] = {}
        for j in range(1, t):
            x = row[j - 1]
            if j >= 2:
                seen.setdefault(row[j - 2], set()).add(x)
            ok = all(len(seen.get(x, ())) <= 1 for r in followers if x in r.cue)
            out[i, j] &= ok and (not simple or all_hold(simple, an, row[:j]))
    return out
