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
    """

    evaluated: int
    worst: float
    failing: Any = None
    value: float | None = None
    found_after: int | None = None

    @property
    def failed(self) -> bool:
        """Whether an item exceeded the threshold."""
        return self.found_after is not None


class _Exceeded(AssertionError):
    """Raised inside the search when a batch holds an item over the threshold."""


def _settings(max_examples: int, database: str | Path | None, phases: list[Phase]) -> settings:
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
    group: int = 1,
) -> Outcome:
    """Search for an item with ``values([item])[0] > threshold``; shrink it to a minimal one.

    Args:
        strategy: draws single items (a context, a pair of contexts, a Tracr input...).
        values: scores a batch of items at once, float array ``[N]``; larger is worse.
        threshold: an item fails when its value exceeds this.
        name: the ``target()`` label and the database key (one per claim or program).
        examples: about how many items to score before giving up (a drawn batch holds
            about four on average).
        batch: the most items in one batch.
        seed_: Hypothesis seed.
        database: directory of the replay database (None: no replay).
        group: above 1, a batch is drawn as a list of lists of up to ``group`` items
            (about 4 * group items on average instead of 4), for strategies whose items cost
            Hypothesis more than the model does; a failure still shrinks to one item.
    """
    state: dict[str, Any] = {"n": 0, "worst": -math.inf, "fail": None, "found_after": None}

    def run(items):
        scores = np.asarray(values(items), dtype=float)
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
    if group > 1:
        groups = st.lists(strategy, min_size=1, max_size=group)
        batches = st.lists(groups, min_size=1, max_size=max(1, batch // group)).map(_flat)
    else:
        batches = st.lists(strategy, min_size=1, max_size=batch)
    run = given(batches)(run)
    run = seed(seed_)(run)
    # settings after seed: @seed alone switches the database off
    phases = [Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
    per_call = 4 * group  # items in a drawn batch, about (4 per list on average)
    run = _settings(max(1, examples // per_call), database, phases)(run)
    try:
        run()
    except _Exceeded:
        item, value = state["fail"]
        return Outcome(state["n"], state["worst"], item, value, state["found_after"])
    return Outcome(state["n"], state["worst"])


def _flat(groups: list[list]) -> list:
    return [x for g in groups for x in g]


def draw(strategy: st.SearchStrategy, n: int, seed_: int = 0) -> list:
    """``n`` items drawn by Hypothesis from ``strategy`` (generate phase only, seeded);
    duplicates are kept, in drawing order."""
    drawn: list = []

    @seed(seed_)
    @_settings(max(1, n), None, [Phase.generate])
    @given(strategy)
    def record(item):
        drawn.append(item)

    record()
    return drawn
