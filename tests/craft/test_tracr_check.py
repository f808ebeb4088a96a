"""The check against ``rasp.evaluate``: silent Tracr failures are caught and explained.

Tracr's discretising MLPs (SelectorWidth, numerical Maps) are built for mlp_exactness
100; compiled for max_len 10, ``length`` miscounts long inputs. The check must find
that, shrink it to a minimal failing input, name the cause and confirm the fix. Beyond
100,000 inputs it is ``verify.tracr_check.check``: the search engine of ``craft check``.
"""

from __future__ import annotations

import functools
import logging

import pytest

from craft.tracr import agreement, from_rasp
from craft.tracr.agreement import n_inputs
from craft.tracr.library import lib_programs
from craft.tracr.pipeline import compile_checked
from specs.errors import CraftError
from verify.tracr_check import check

logging.getLogger("absl").setLevel(logging.ERROR)

LIB = {p.name: p for p in lib_programs()}


@functools.cache
def program_of(name: str, max_len: int):
    return LIB[name].build(max_len)


def test_exhaustive_up_to_the_limit_then_sampled() -> None:
    assert n_inputs(3, 10) == 88_572  # count at max_len 10: checked exhaustively
    assert n_inputs(4, 10) > 100_000  # length at max_len 10: Hypothesis
    program = program_of("count", 6)
    model = from_rasp(program, LIB["count"].vocab, 6)
    full = check(model, program, LIB["count"].vocab)
    assert full.exhaustive and full.checked == n_inputs(3, 6) and full.passed
    assert agreement.check(model, program, LIB["count"].vocab).to_json() == full.to_json()
    sampled = check(model, program, LIB["count"].vocab, limit=100, samples=50)
    assert not sampled.exhaustive and 40 <= sampled.checked <= 100 and sampled.passed
    with pytest.raises(CraftError, match="over the exhaustive limit of 100"):
        agreement.check(model, program, LIB["count"].vocab, limit=100)  # no sampler


def test_default_exactness_fails_at_max_len_10_and_the_fix_is_confirmed() -> None:
    program, vocab = program_of("length", 10), LIB["length"].vocab
    model, result = compile_checked(program, vocab, 10, samples=150, seed=0, check=check)
    assert not result.exhaustive
    assert result.agreement < 1.0
    minimal = result.failures[0]
    # Hypothesis shrinks towards short inputs of the first token: the length-10 input
    # is the shortest that miscounts.
    assert minimal.input == ("a",) * 10
    assert minimal.expected == (10,) * 10 and minimal.got != minimal.expected
    assert any("SelectorWidth" in s for s in result.suspects)
    assert "mlp_exactness=100" in result.diagnosis
    assert "mlp_exactness=1000" in result.fix and "then pass" in result.fix
    fixed = from_rasp(program, vocab, 10, mlp_exactness=1000)
    assert check(fixed, program, vocab, samples=150).agreement == 1.0


def test_numerical_program_fails_silently_and_is_caught() -> None:
    program, vocab = program_of("length_numerical", 10), LIB["length_numerical"].vocab
    model = from_rasp(program, vocab, 10)
    result = check(model, program, vocab, samples=100)
    assert result.agreement < 1.0
    assert result.fix is not None and "1000" in result.fix
    got = result.failures[0].got
    assert all(isinstance(g, float) for g in got)


def test_results_are_reproducible_and_json_ready() -> None:
    program, vocab = program_of("length", 10), LIB["length"].vocab
    model = from_rasp(program, vocab, 10)
    a = check(model, program, vocab, samples=60, seed=3)
    b = check(model, program, vocab, samples=60, seed=3)
    assert a.to_json() == b.to_json()
    obj = a.to_json()
    assert set(obj) >= {"agreement", "checked", "exhaustive", "failures"}
    assert set(obj["failures"][0]) == {"input", "expected", "got"}


def test_check_refuses_inputs_longer_than_the_model() -> None:
    program = program_of("hist", 4)
    model = from_rasp(program, LIB["hist"].vocab, 4)
    with pytest.raises(CraftError, match="at most 4"):
        check(model, program, LIB["hist"].vocab, max_len=6)


def test_planted_defect_is_found_by_the_shared_search_and_replayed_first(tmp_path) -> None:
    """``sort`` with its last position embedding halved is wrong only on full-length
    inputs (4**9 of the 349,524: Hypothesis territory). The search engine of ``craft
    check`` finds it, shrinks it to a minimal input, and its replay database re-checks
    that input first on the next run."""
    import torch

    program, vocab = program_of("sort", 9), LIB["sort"].vocab
    model = from_rasp(program, vocab, 9)
    clean = check(model, program, vocab, samples=100, database=tmp_path)
    assert clean.passed and not clean.exhaustive and clean.found_after is None
    with torch.no_grad():
        model.model.pos_embed.W_pos[9] *= 0.5
    first = check(model, program, vocab, samples=100, database=tmp_path)
    again = check(model, program, vocab, samples=100, database=tmp_path)
    assert not first.passed and not first.exhaustive
    minimal = first.failures[0]
    assert minimal.input == (1,) * 8 + (2,)  # full length, two distinct tokens, smallest
    assert agreement.failures_on(model, program, [minimal.input]) == [minimal]
    assert first.found_after > 1
    assert again.found_after == 1 and again.failures[0] == minimal


def test_the_replay_key_names_the_model() -> None:
    """Two models of one program (another mlp_exactness) never share replay entries."""
    from craft.tracr.program import load_program
    from verify.tracr_check import replay_key

    program, vocab = load_program("lib:length", max_len=4)
    a, b = (from_rasp(program, vocab, 4, mlp_exactness=e) for e in (100, 1000))
    keys = {replay_key(program, sorted(vocab), 4, m) for m in (a, a, b)}
    assert len(keys) == 2
