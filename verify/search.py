"""The one Hypothesis search engine behind ``craft check`` and the Tracr agreement check.

:func:`search` looks for an item whose value exceeds a threshold. Hypothesis proposes
a *batch* of items (``st.lists(strategy, min_size=1, max_size=batch)``), ``values``
scores the whole batch at once (one forward pass), and:

* ``target()`` is fed the batch's worst value, so the search climbs towards failures;
* runs are seeded (``@seed``), so a check is reproducible;
* a ``DirectoryBasedExampleDatabase`` (when ``database`` is given) stores the failure
  and replays it first next time, keyed by ``name``;
* phases are reuse (the database), generate, target, shrink: a failing batch shrinks
  (Hypothesis deletes items, shortens and simplifies them) to one minimal item.

Hypothesis proposes the same item again and again (shrinking and the target phase
mutate one item of a batch and keep the rest): each distinct item is scored once and
remembered, and :class:`Outcome` counts both. ``@seed`` alone switches Hypothesis' database
off, so the settings are applied after it: seeded runs replay too.

:func:`draw` only samples items from a strategy (no search), for estimates over a
sample.

Shape glossary: N items in a batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings, target
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

Values = Callable[[list], np.ndarray]  # a batch of N items -> float values [N]


@dataclass(frozen=True)
class Outcome:
    """What a search found.

    Attributes:
        evaluated: items scored in all phases (shrinking included).
        worst: the largest value seen (``-inf`` when nothing was scored).
        failing: the minimal item whose value exceeds the threshold, or None.
        value: the value at ``failing`` (None when nothing failed).
        found_after: items scored up to and including the first failing batch.
        distinct: distinct items among ``evaluated`` (the model ran on these only).
    """

    evaluated: int
    worst: float
    failing: Any = None
    value: float | None = None
    found_after: int | None = None
    distinct: int = 0

    @property
    def failed(self) -> bool:
        """Whether an item exceeded the threshold."""
        return self.found_after is not None


class _Exceeded(AssertionError):
    """Raised inside the search when a batch holds an item over the threshold."""


def _settings(max_examples: int, database: str | Path | None, phases: list[Phase]) -> settings:
    """Quiet, deadline-free settings with every health check off (batches are slow to
    draw on purpose) and the given budget, database and phases."""
    return settings(
        max_examples=max_examples,
        database=DirectoryBasedExampleDatabase(str(database)) if database else None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        phases=phases,
        report_multiple_bugs=False,
        print_blob=False,
    )


def search(
    strategy: st.SearchStrategy,
    values: Values,
    threshold: float,
    *,
    name: str,
    examples: int = 200,
    batch: int = 64,
    seed_: int = 0,
    database: str | Path | None = None,
) -> Outcome:
    """Search for an item with ``values([item])[0] > threshold``; shrink it to a minimal one.

    Args:
        strategy: draws single items (a context, a pair of contexts, a Tracr input...).
        values: scores a batch of items at once, float array ``[N]``; larger is worse.
            It must be a function of each item alone: an item is scored once, however
            often Hypothesis proposes it again.
        threshold: an item fails when its value exceeds this.
        name: the ``target()`` label and the database key (one per claim or program).
        examples: about how many items to score before giving up (a drawn batch holds
            about four on average).
        batch: the most items in one batch.
        seed_: Hypothesis seed.
        database: directory of the replay database (None: no replay).
    """
    state: dict[str, Any] = {"n": 0, "worst": -math.inf, "fail": None, "found_after": None}

    memo: dict[Any, float] = {}  # an item's value; shrinking re-proposes the same items

    def scored(items: list) -> np.ndarray:
        """``values`` of the batch, computed only for items not scored before."""
        keys = [_hashable(x) for x in items]
        fresh = {k: x for k, x in zip(keys, items, strict=True) if k not in memo}
        if fresh:
            scores = np.asarray(values(list(fresh.values())), dtype=float)
            memo.update(zip(fresh, scores, strict=True))
        return np.array([memo[k] for k in keys])

    def run(items):
        """Score one batch; raise on an item over the threshold."""
        scores = scored(items)
        state["n"] += len(items)
        worst = int(scores.argmax())
        target(float(scores[worst]), label=name)
        state["worst"] = max(state["worst"], float(scores[worst]))
        if scores[worst] > threshold:
            # The last failing call is Hypothesis replaying its shrunk minimal batch.
            state["fail"] = (items[worst], float(scores[worst]))
            if state["found_after"] is None:
                state["found_after"] = state["n"]
            raise _Exceeded(name)

    # The database key is a digest of the test function (the same source for every
    # search) plus this: one key per claim or program.
    run._hypothesis_internal_add_digest = name.encode()
    batches = st.lists(strategy, min_size=1, max_size=batch)
    run = given(batches)(run)
    run = seed(seed_)(run)
    # settings after seed: @seed alone switches the database off
    phases = [Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
    # a drawn batch holds ~4 items on average
    run = _settings(max(1, examples // 4), database, phases)(run)
    try:
        run()
    except _Exceeded:
        item, value = state["fail"]
        return Outcome(state["n"], state["worst"], item, value, state["found_after"], len(memo))
    return Outcome(state["n"], state["worst"], distinct=len(memo))


def _hashable(item: Any) -> Any:
    """``item`` with every list made a tuple, as a memo key."""
    if isinstance(item, list | tuple):
        return tuple(_hashable(x) for x in item)
    return item


def draw(strategy: st.SearchStrategy, n: int, seed_: int = 0) -> list:
    """``n`` items drawn by Hypothesis from ``strategy`` (generate phase only, seeded);
    duplicates are kept, in drawing order."""
    drawn: list = []

    @seed(seed_)
    @_settings(max(1, n), None, [Phase.generate])
    @given(strategy)
    def record(item):
        """Keep the drawn item."""
        drawn.append(item)

    record()
    return drawn
