"""The one Hypothesis search engine behind ``craft check`` and the Tracr agreement check.

:func:`search` looks for an item whose value exceeds a threshold. Hypothesis proposes
a *batch* of items (``st.lists(strategy, min_size=1, max_size=batch)``), ``values``
scores the whole batch at once (one forward pass), and:

* ``target()`` is fed the batch's worst value, so the search climbs towards failures;
* runs are seeded (``@seed``), so a check is reproducible;
* a ``DirectoryBasedExampleDatabase`` (when ``database`` is given) stores the failure
  and replays it first next time, keyed by ``key`` (the caller makes it a digest of
  everything the verdict depends on: model, spec, claim, seed, budget), so a replay can
  only repeat the verdict that the same inputs give anyway;
* phases are reuse (the database), generate, target, shrink: a failing batch shrinks
  (Hypothesis deletes items, shortens and simplifies them) to one minimal item;
* then, when a :class:`verify.sweep.Sweep` is given and nothing failed, many more items
  drawn in bulk; a failure there is shrunk by :func:`verify.sweep.shrink` and stored
  under its own key, replayed before Hypothesis runs;
* a failure Hypothesis found is shrunk further by the same :func:`verify.sweep.shrink`
  (Hypothesis draws long runs of tokens as one seed, which it cannot shrink token by
  token), so both phases report minimal items by one definition.

Hypothesis keeps files of its own (a cache of source constants) under its home folder,
``./.hypothesis`` by default: :func:`search` points it at ``database`` while it runs,
or at a temporary folder it removes when there is no database, so a check never
creates a folder in the working directory.

Hypothesis proposes the same item again and again (shrinking and the target phase
mutate one item of a batch and keep the rest): each distinct item is scored once and
remembered, and :class:`Outcome` counts both. ``@seed`` alone switches Hypothesis' database
off, so the settings are applied after it: seeded runs replay too.

A value that is not finite (NaN or inf: a diverged model) exceeds every threshold, so it
fails like any other violation and is reported as it is; ``target()`` (which takes finite
numbers only) sees it as the largest float. When no item satisfies the strategy's filters
at all (a claim about a rule that never fires), nothing is scored: the outcome is empty.

:func:`draw` only samples items from a strategy (no search), for estimates over a
sample.

Shape glossary: N items in a batch.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings, target
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir, storage_directory
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import Unsatisfiable

from verify.sweep import Sweep, shrink

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
        items: those distinct items (lists as tuples), for coverage figures.
    """

    evaluated: int
    worst: float
    failing: Any = None
    value: float | None = None
    found_after: int | None = None
    distinct: int = 0
    items: tuple = ()

    @property
    def failed(self) -> bool:
        """Whether an item exceeded the threshold."""
        return self.found_after is not None


class _Exceeded(AssertionError):
    """Raised inside the search when a batch holds an item over the threshold."""


_LARGEST = float(np.finfo(float).max)


def over(scores: np.ndarray, threshold: float) -> np.ndarray:
    """bool [N]: the values that fail, those above ``threshold`` and every non-finite one."""
    scores = np.asarray(scores, dtype=float)
    return ~np.isfinite(scores) | (scores > threshold)


def _rank(value: float) -> float:
    """``value`` for ordering the worst seen: NaN above everything, else itself."""
    return math.inf if math.isnan(value) else value


def _observed(value: float) -> float:
    """What ``target()`` sees (finite numbers only): a non-finite value, which fails,
    is the largest float."""
    return value if math.isfinite(value) else _LARGEST


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
    sweep: Sweep | None = None,
    sweep_n: int = 0,
    key: str | None = None,
) -> Outcome:
    """Search for an item with ``values([item])[0] > threshold``; shrink it to a minimal one.

    Args:
        strategy: draws single items (a context, a pair of contexts, a Tracr input...).
        values: scores a batch of items at once, float array ``[N]``; larger is worse.
            It must be a function of each item alone: an item is scored once, however
            often Hypothesis proposes it again.
        threshold: an item fails when its value exceeds this.
        name: the ``target()`` label, and the database key unless ``key`` is given.
        examples: about how many items to score before giving up (a drawn batch holds
            about four on average).
        batch: the most items in one batch.
        seed_: Hypothesis seed.
        database: directory of the replay database (None: no replay).
        sweep: the breadth phase (:mod:`verify.sweep`), run when Hypothesis found
            nothing: ``sweep_n`` items drawn in bulk, scored ``batch`` at a time; a failure
            it finds is shrunk by :func:`verify.sweep.shrink` and stored in the replay
            database (under its own key), which is checked before anything else.
        sweep_n: how many items the sweep draws.
        key: the replay database key (default ``name``).
    """
    with _home(database):
        return _search(
            strategy,
            values,
            threshold,
            name,
            examples,
            batch,
            seed_,
            database,
            sweep,
            sweep_n,
            key or name,
        )


@contextlib.contextmanager
def _home(database: str | Path | None):
    """Hypothesis' home folder set to ``database`` (a temporary folder, removed after,
    when None) for the duration, then set back."""
    before = storage_directory(intent_to_write=False).path
    with contextlib.ExitStack() as stack:
        home = database or stack.enter_context(tempfile.TemporaryDirectory(prefix="craft-"))
        set_hypothesis_home_dir(home)
        try:
            yield
        finally:
            set_hypothesis_home_dir(before)


def _search(
    strategy, values, threshold, name, examples, batch, seed_, database, sweep, sweep_n, key
) -> Outcome:
    """:func:`search`, with its arguments in order."""
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

    def check(items: list) -> float:
        """Score one batch and count it; raise on an item over the threshold. Returns the
        batch's worst value."""
        scores = scored(items)
        state["n"] += len(items)
        ranks = np.where(np.isfinite(scores), scores, np.inf)  # non-finite: the worst
        worst = int(ranks.argmax())
        if ranks[worst] > _rank(state["worst"]):
            state["worst"] = float(scores[worst])
        if over(scores[worst : worst + 1], threshold)[0]:
            # The last failing call is Hypothesis replaying its shrunk minimal batch.
            state["fail"] = (items[worst], float(scores[worst]))
            if state["found_after"] is None:
                state["found_after"] = state["n"]
            raise _Exceeded(name)
        return float(scores[worst])

    def run(items):
        """Hypothesis' test: ``check`` the batch, feeding ``target()`` its worst value."""
        try:
            worst = check(items)
        except _Exceeded:
            target(_observed(state["fail"][1]), label=name)
            raise
        target(_observed(worst), label=name)

    # The database key is a digest of the test function (the same source for every
    # search) plus this: one key per claim or program.
    run._hypothesis_internal_add_digest = key.encode()
    batches = st.lists(strategy, min_size=1, max_size=batch)
    run = given(batches)(run)
    run = seed(seed_)(run)
    # settings after seed: @seed alone switches the database off
    phases = [Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
    # a drawn batch holds ~4 items on average
    run = _settings(max(1, examples // 4), database, phases)(run)
    stored = _Stored(database, key) if database and sweep else None
    try:
        if stored is not None:
            stored.replay(scored, threshold, check)
        try:
            with contextlib.suppress(Unsatisfiable):  # no item passes the filters
                run()
        except _Exceeded:
            if sweep is not None:  # a Hypothesis failure: shrink it token by token
                item = state["fail"][0]
                fails = lambda b: over(scored(b), threshold)  # noqa: E731
                small, tried = shrink(item, fails, sweep.valid, sweep.alphabet)
                state["n"] += tried
                state["fail"] = (small, float(scored([small])[0]))
            raise
        if sweep is not None and sweep_n > 0:
            _sweep(sweep, sweep_n, batch, seed_, scored, threshold, check, state, stored)
    except _Exceeded:
        item, value = state["fail"]
        return Outcome(
            state["n"], state["worst"], item, value, state["found_after"], len(memo), tuple(memo)
        )
    return Outcome(state["n"], state["worst"], distinct=len(memo), items=tuple(memo))


SWEEP_BATCH = 512  # items drawn and scored at once in the sweep


class _Stored:
    """Sweep failures in the replay database, under their own key (Hypothesis' entries
    are choice sequences for its own strategies; these are items, as JSON)."""

    def __init__(self, database: str | Path, name: str) -> None:
        self.db = DirectoryBasedExampleDatabase(str(database))
        self.key = b"craft-sweep:" + name.encode()

    def save(self, item) -> None:
        self.db.save(self.key, json.dumps({"item": item}).encode())

    def replay(self, scored, threshold: float, check) -> None:
        """Forget stored items that now pass; ``check`` the rest (raises on the first)."""
        for blob in list(self.db.fetch(self.key)):
            item = _item(json.loads(blob)["item"])
            if not over(scored([item]), threshold)[0]:
                self.db.delete(self.key, blob)
            else:
                check([item])


def _item(x):
    """A JSON-decoded item: a pair of contexts comes back as a tuple."""
    return tuple(x) if x and isinstance(x[0], list) else x


def _sweep(
    sweep: Sweep, n: int, batch: int, seed_: int, scored, threshold, check, state, stored
) -> None:
    """``check`` ``n`` items from ``sweep``, drawn and checked ``SWEEP_BATCH`` at a time
    (at most ``4 * n / SWEEP_BATCH`` draws, since a rare rule's draws come back short;
    :mod:`verify.batched` runs the carriers of a draw, similar lengths together, in
    chunks); a failing draw's shortest failing item is shrunk, stored and raised (as
    the minimal counterexample)."""
    rng = np.random.default_rng(seed_)
    done = 0
    for _ in range(4 * math.ceil(n / SWEEP_BATCH)):  # a rare rule yields few per draw
        if done >= n:
            return
        items = sweep.draw(rng, min(SWEEP_BATCH, n - done))
        if not items:
            return
        done += len(items)
        try:  # all at once: prefixes of one sequence share its forward pass
            check(items)
        except _Exceeded:
            fails = over(scored(items), threshold)
            bad = [x for x, f in zip(items, fails, strict=True) if f]
            small, tried = shrink(
                min(bad, key=_length),
                lambda b: over(scored(b), threshold),
                sweep.valid,
                sweep.alphabet,
            )
            state["n"] += tried
            if stored is not None:
                stored.save(small)
            state["fail"] = (small, float(scored([small])[0]))
            raise


def _length(item) -> int:
    return len(item[0]) if isinstance(item, tuple) else len(item)


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
