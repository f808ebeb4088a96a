"""Bounded resources (issue #11, class 6): estimate before allocating, refuse in one line.

Each command that a small input can make allocate without end checks an estimate
against the limit (``--max-memory``, else the memory free on the machine) before it
allocates: the model of a compile (counted on the meta device), the arrays of
``sample``, Tracr's matrices (pilot compiles). ``benchmarks/memory.py`` compares the
estimates with measured peaks (within a factor of 2 on three sizes each).
"""

from __future__ import annotations

import logging
import tracemalloc

import pytest

import specs
from craft.memory import parse_size
from craft.models import ModelConfig, Transformer
from craft.models.transformer import param_count
from specs.sample import sample, sample_bytes
from tests.refusals import error_line, run, snapshot

logging.getLogger("absl").setLevel(logging.ERROR)
TOY = str(specs.library_path("toy_language"))


def test_a_compile_over_the_limit_is_refused_before_allocating(tmp_path, capsys) -> None:
    before = snapshot(tmp_path)
    out = tmp_path / "m.safetensors"
    code, _, err = run(capsys, "compile", TOY, "-o", out, "--max-memory", "1M")
    error_line(
        code, err, "a model of", "parameters needs about", "over the 1.0 MiB of --max-memory"
    )
    assert snapshot(tmp_path) == before


def test_sampling_more_than_any_machine_holds_is_refused(capsys) -> None:
    code, out, err = run(capsys, "sample", TOY, "-n", str(10**11))
    error_line(code, err, "sampling needs about", "TiB", "pass a smaller -n")
    assert out == ""


def test_a_long_tracr_compile_is_estimated_and_refused(capsys) -> None:
    code, _, err = run(capsys, "tracr", "lib:length", "--max-len", "128", "--max-memory", "1M")
    error_line(code, err, "compiling lib:length at --max-len 128", "pilots at 32 and 64")


@pytest.mark.parametrize("size", ["2x", "0", "1.5.2G", "G"])
def test_max_memory_takes_a_size(capsys, size) -> None:
    code, _, err = run(capsys, "sample", TOY, "-n", "1", "--max-memory", size)
    error_line(code, err, "--max-memory", "4G or 512M")


def test_sizes_parse_in_binary_units() -> None:
    assert parse_size("4G") == 4 * 2**30 and parse_size("512MiB") == 512 * 2**20
    assert parse_size("1.5k") == 1536 and parse_size("1000") == 1000


def test_nesting_deeper_than_the_parser_is_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    code, _, err = run(capsys, "sample", path)
    error_line(code, err, str(path), "nests deeper than the parser can read")


def test_param_count_allocates_nothing_and_is_exact() -> None:
    cfg = ModelConfig("standard", 2, 4, 64, 16, 128, 50, 50, 129)
    assert param_count(cfg) == Transformer(cfg).n_params()
    huge = ModelConfig("standard", 2, 4, 10**6, 16, 128, 10**6, 10**6, 129)
    tracemalloc.start()
    assert param_count(huge) > 2 * 10**12  # 8 TB of float32, counted on the meta device
    assert tracemalloc.get_traced_memory()[1] < 10 * 2**20
    tracemalloc.stop()


def test_the_sampling_estimate_is_within_a_factor_of_two() -> None:
    spec = specs.load_library("toy_language")
    tracemalloc.start()
    sample(spec, 5000, spec.max_len, 0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert 0.5 <= sample_bytes(spec, 5000, spec.max_len) / peak <= 2
