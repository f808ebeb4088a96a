"""Sampling sequences from a spec, exactly from the ground-truth distribution.

The loop runs over positions, never over sequences: at each position the
:class:`~specs.engine.Evaluator` gives every row's distribution, as the id of a
precomputed CDF (the same numbers :func:`specs.truth.truth` returns), and one uniform
per row picks the token by inverse CDF: exactly :func:`draw` on the dense row, without
building it. The uniforms are the stream of one ``rng.random(batch)`` per position
(``default_rng(seed)``), drawn at once as the integers ``k = u * 2**53``, so a seed gives
the same samples as drawing position by position with :func:`draw`.

Shape glossary: ``B`` batch, ``L`` length (tokens after BOS), ``V`` vocabulary size.
"""

from __future__ import annotations

import numpy as np

from specs.engine import Evaluator
from specs.errors import CraftError
from specs.kinds import kind_of
from specs.model import Spec


def _check_int(value: object, name: str, lo: int, hi: int | None, spec: Spec) -> int:
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if not ok or value < lo or (hi is not None and value > hi):
        bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise CraftError(
            f"{name} is {value!r}, expected an integer {bound}",
            where=f"sample({spec.name})",
            fix=f"pass {name} in {bound}",
        )
    return int(value)


def draw(probs: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of one token per row.

    Args:
        probs: float64 [B, V], rows summing to 1 (up to rounding).
        uniforms: float64 [B] in [0, 1).

    Returns:
        int64 [B]: the first index whose (normalised) CDF exceeds the uniform. A token
        of probability 0 has a flat CDF step and is never drawn; normalising by the last
        CDF entry makes it exactly 1.0, so the index is always ``< V``.
    """
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]
    return (cdf <= uniforms[:, None]).sum(axis=1).astype(np.int64)


def _uniform_ints(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """The integers ``k`` of ``rng.random(shape) == k / 2**53`` (the same stream: numpy's
    float64 uniform is the top 53 bits of one raw 64-bit draw of PCG64, the bit generator
    of ``default_rng``), int64, without the slow float -> int conversion."""
    raw = rng.bit_generator.random_raw(shape[0] * shape[1]) >> np.uint64(11)
    return raw.view(np.int64).reshape(shape)


def sample_bytes(spec: Spec, batch: int, length: int) -> int:
    """The memory :func:`sample` takes, in bytes, before it allocates any of it.

    Six int64 arrays of ``length x batch`` live at the peak: the uniforms and their
    buckets, the position-major tokens and rules, and the contiguous copies returned;
    the evaluator adds a few per-sequence vectors. Measured with tracemalloc on the
    library specs: 49.5 to 52 bytes per token at 10,000 sequences and more (this gives
    48 per token plus 32 per sequence; ``benchmarks/memory.py``). Kinds with more
    per-sequence state (a bracket rule's stack: 8 bytes per token) add their
    ``state_bytes``.
    """
    state = sum(kind_of(rule).state_bytes(rule, batch, length) for rule in spec.rules)
    return 8 * batch * (6 * length + 4) + 64 * len(spec.vocab) * (len(spec.rules) + 2) + state


def sample(spec: Spec, batch: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``batch`` sequences of ``length`` tokens.

    Args:
        spec: a resolved spec.
        batch: number of sequences (>= 0).
        length: tokens after BOS, ``0..spec.max_len``.
        seed: seed of the numpy Generator (>= 0); the result depends only on it.

    Returns:
        tokens int64 [B, 1 + L] with the BOS id in column 0, and rule_ids int64 [B, L]
        where ``rule_ids[:, t]`` is the rule that generated ``tokens[:, t + 1]`` (the
        rule firing at position ``t``; ``spec.start_rule_id`` at ``t = 0``).

    Raises:
        CraftError: a negative batch or seed, or a length outside ``0..max_len``.
    """
    batch = _check_int(batch, "batch", 0, None, spec)
    length = _check_int(length, "length", 0, spec.max_len, spec)
    seed = _check_int(seed, "seed", 0, None, spec)
    rng = np.random.default_rng(seed)
    uniforms = _uniform_ints(rng, (length, batch))
    evaluator = Evaluator(spec, batch, length)
    buckets = uniforms >> evaluator.bucket_shift
    # position-major buffers: column t of the [B, T] views is a contiguous row
    by_position = np.full((1 + length, batch), len(spec.vocab), dtype=np.int64)
    rules_by_position = np.empty((length, batch), dtype=np.int64)
    tokens = by_position.T
    for t in range(length):
        dist, rules_by_position[t] = evaluator.step_ids(tokens)
        by_position[t + 1] = evaluator.draw(dist, uniforms[t], buckets[t])
    return np.ascontiguousarray(tokens), np.ascontiguousarray(rules_by_position.T)
