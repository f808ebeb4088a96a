"""What ``verify`` needs to know about one rule kind (:class:`VerifyKind`).

A kind module (``verify/kinds/<key>.py``, ``key`` the YAML key of the rule kind in
:mod:`specs.kinds`) defines one ``KIND`` object; :mod:`verify.kinds` finds it for a rule
through :func:`specs.kinds.kind_of`. The hooks, and who calls them:

* ``tail(rule, spec)``: a function ``draw -> [token, ...]`` drawing the end of a
  context at which the rule's condition holds (:mod:`verify.strategies`, the Hypothesis
  contexts of ``rule_holds`` claims); it is built once per rule and drawn many times.
* ``tokens(rule)``: the token ids the rule mentions (anchors, cues, answers), the
  tokens a head serving it is probed with (:mod:`verify.matching`).
* ``fixed(rule)``: whether the rule has one possible next-token distribution, so a
  claim can compare distributions rather than copied tokens (:mod:`verify.check`).
* ``reads_prev``: whether a crafted model serves the rule through the previous-token
  head (its ``prev`` subspace), so ablating that head must break the rule
  (:mod:`verify.defaults`, :mod:`verify.check`).
* ``head_roles``: the ``head_role`` claim roles that name a rule of this kind
  (``rule:`` of a ``skip-bigram`` role must be a skip-bigram rule) (:mod:`verify.claims`).
* ``off_support``: component kinds (``ComponentKind`` values) serving the rule whose
  ablation changes outputs only off the spec's support, so an ablation claim over a
  handful of contexts would pass or fail by the draw: no default ablation claim for
  them (:mod:`verify.defaults`).
* ``condition_scored``: whether a compact model's condition heads (``trigram-head``,
  ``readout-head``) are scored on this rule's pairs ``(x[t-1], x[t])``
  (:mod:`verify.matching`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from specs.model import Spec

Tail = Callable[[Callable[[Any], Any]], list[int]]  # draw -> the context's last tokens


@dataclass(frozen=True)
class VerifyKind:
    """The verifier's hooks for one rule kind (see the module docstring)."""

    key: str
    tail: Callable[[Any, Spec], Tail]
    tokens: Callable[[Any], frozenset[int]]
    fixed: Callable[[Any], bool] = lambda rule: True
    reads_prev: bool = False
    head_roles: tuple[str, ...] = ()
    condition_scored: bool = False
    off_support: frozenset[str] = frozenset()
