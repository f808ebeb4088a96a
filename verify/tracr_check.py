"""The Tracr agreement check, on the search engine that ``craft check`` uses.

:func:`check` is :func:`craft.tracr.agreement.check` (every input when there are at most
100,000) with a Hypothesis sampler for larger input spaces: :func:`verify.search.search`
draws batches of inputs (lists of vocabulary values, length 1..max_len), runs the
converted model on a whole batch at once (one forward pass per input length) and
compares it with ``rasp.evaluate``. An input's value is 1 when the model disagrees
anywhere and below 0.5 otherwise (half its :attr:`Verdict.closeness`: how near the
model came to a wrong output), so ``target()`` climbs towards failures; the threshold is
0.5. A failure shrinks to a minimal failing input, which the replay database (the same
replay store ``craft check`` uses, keyed by the model) re-checks first next time.

Hypothesis draws short inputs again and again (each is scored once), so the search's
budget is three times ``samples``, which scores about ``samples`` distinct inputs.
When the search passes, the inputs it scored are the sample (agreement 1). When it
fails, the agreement is measured on ``samples`` freshly drawn inputs plus the minimal
failure, as an estimate of how often the model is wrong; the minimal failure comes
first in ``failures``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

from craft.tracr.agreement import LIMIT, CheckResult, Oracle, Sampled, Sampler, Verdict
from craft.tracr.agreement import check as _check
from craft.tracr.model import TracrModel
from verify.replay import model_digest
from verify.search import draw, search

BATCH = 64  # most inputs in one Hypothesis example
REPEATS = 3  # Hypothesis draws short inputs again and again: budget for `samples` distinct
THRESHOLD = 0.5  # a value above it is a disagreement


def inputs(vocab: Sequence[Any], max_len: int) -> st.SearchStrategy[tuple[Any, ...]]:
    """Inputs (BOS excluded) of length 1..max_len over ``vocab``, the length drawn first
    (``st.lists`` would draw mostly short inputs, of which there are few); they shrink
    to short inputs of the first vocabulary value."""
    token, lengths = st.sampled_from(list(vocab)), st.integers(1, max_len)

    @st.composite
    def one(draw) -> tuple[Any, ...]:
        """An input: its length, then its tokens."""
        return tuple(draw(token) for _ in range(draw(lengths)))

    return one()


def replay_key(program: Any, vocab: Sequence[Any], max_len: int, model: Any = None) -> str:
    """The replay-database key of a check, the same across processes and reloads: the
    program's label (RASP labels end in a global counter, ``length_3``, which is
    dropped), the vocabulary, ``max_len`` and the digest of the converted model's
    weights (:func:`verify.replay.model_digest`), so another model of the same program
    (another ``--mlp-exactness``, another craft version) never replays this one's."""
    label = re.sub(r"_[0-9]+$", "", program.label)
    digest = model_digest(model.model)[:16] if model is not None else "-"
    return f"tracr:{label}:{list(vocab)!r}:{max_len}:{digest}"


def value(verdict: Verdict) -> float:
    """1 for a disagreement; otherwise half the closeness to one (below the threshold)."""
    return 1.0 if verdict.wrong else THRESHOLD * min(verdict.closeness, 0.999)


def sampler(database: str | Path | None = None, batch: int = BATCH) -> Sampler:
    """A sampler for :func:`craft.tracr.agreement.check` that searches with Hypothesis.

    Args:
        database: replay database directory (None: no replay).
        batch: most inputs in one Hypothesis example (one model run per length).
    """

    def sample(oracle: Oracle, vocab: list, max_len: int, samples: int, seed: int) -> Sampled:
        """Search for a disagreement; on one, measure the agreement on a fresh sample."""
        seen: dict[tuple[Any, ...], Verdict] = {}  # the model and rasp.evaluate are pure

        def judged(xs: Sequence[tuple[Any, ...]]) -> list[Verdict]:
            """Verdicts on ``xs``, running the model only on inputs not seen before."""
            fresh = [x for x in dict.fromkeys(xs) if x not in seen]
            for v in oracle.verdicts(fresh) if fresh else ():
                seen[v.input] = v
            return [seen[x] for x in xs]

        strategy = inputs(vocab, max_len)
        found = search(
            strategy,
            lambda xs: np.array([value(v) for v in judged(xs)]),
            THRESHOLD,
            name=replay_key(oracle.program, vocab, max_len, oracle.model),
            examples=REPEATS * samples,
            batch=batch,
            seed_=seed,
            database=database,
        )
        if not found.failed:
            return Sampled(list(seen), [])
        minimal = seen[found.failing].failure
        drawn = list(dict.fromkeys([*draw(strategy, samples, seed), minimal.input]))
        others = [v.failure for v in judged(drawn) if v.wrong and v.input != minimal.input]
        return Sampled(drawn, [minimal, *others], found.found_after)

    return sample


def check(
    model: TracrModel,
    program: Any,
    vocab: Sequence[Any],
    max_len: int | None = None,
    *,
    limit: int = LIMIT,
    samples: int = 2000,
    atol: float = 1e-4,
    seed: int = 0,
    max_failures: int = 5,
    database: str | Path | None = None,
) -> CheckResult:
    """Check ``model`` against ``rasp.evaluate(program, ...)``: every input up to
    ``limit`` of them, else a Hypothesis search over about ``samples`` inputs.

    Args are those of :func:`craft.tracr.agreement.check`, plus ``database``: the replay
    database directory (None: no replay).
    """
    return _check(
        model,
        program,
        vocab,
        max_len,
        limit=limit,
        samples=samples,
        atol=atol,
        seed=seed,
        max_failures=max_failures,
        sampler=sampler(database),
    )
