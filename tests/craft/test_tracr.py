"""The Tracr bridge: every library program agrees with ``rasp.evaluate``; parity with Haiku.

The library table (``craft.tracr.library``) drives the agreement tests; the parity
tests compile a few programs with Tracr's own ``compile_rasp_to_model`` (a few seconds
of Haiku each, shared through ``functools.cache``) and compare residual streams.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from craft.tracr import TracrModel, check, from_assembled, from_rasp
from craft.tracr.library import lib_programs
from craft.tracr.network import Head, Sublayer, pack

logging.getLogger("absl").setLevel(logging.ERROR)  # Tracr warns about SequenceMap(x, x)

LIB = {p.name: p for p in lib_programs()}
PARITY = ["reverse", "frac_prevs"]  # categorical (output sorts late), numerical


@functools.cache
def program_of(name: str, max_len: int = 5):
    """One program object per (name, max_len): Tracr's labels carry a global counter."""
    return LIB[name].build(max_len)


@functools.cache
def fast(name: str, max_len: int = 5, exactness: float = 100) -> tuple[TracrModel, object]:
    program = program_of(name, max_len)
    return from_rasp(program, LIB[name].vocab, max_len, mlp_exactness=exactness), program


@functools.cache
def haiku(name: str, max_len: int = 5):
    from tracr.compiler import compiling

    entry = LIB[name]
    program = program_of(name, max_len)
    return compiling.compile_rasp_to_model(
        program, vocab=set(entry.vocab), max_seq_len=max_len, compiler_bos="BOS"
    ), program


def probe_inputs(name: str) -> list[list]:
    vocab = sorted(LIB[name].vocab, key=repr)
    rng = np.random.default_rng(0)
    return [["BOS", *rng.choice(vocab, size=n).tolist()] for n in (1, 3, 5, 5)]


def _python(values: list) -> list:
    return [v.item() if isinstance(v, np.generic) else v for v in values]


@pytest.mark.parametrize("name", sorted(LIB))
def test_library_program_agrees_exhaustively_at_max_len_5(name: str) -> None:
    model, program = fast(name)
    result = check(model, program, LIB[name].vocab)
    assert result.exhaustive
    assert result.checked >= 3**5
    assert result.agreement == 1.0, result.summary()


@pytest.mark.parametrize("name", PARITY)
@pytest.mark.parametrize("path", ["fast", "assembled"])
def test_residual_stream_matches_tracr_haiku(name: str, path: str) -> None:
    assembled, _ = haiku(name)
    ours = fast(name)[0] if path == "fast" else from_assembled(assembled)
    labels = [str(d) for d in ours.model.layout]
    pruned = ours.report["pruned_directions"]
    # The fast path drops directions nothing reads; the rest keep Tracr's order.
    assert sorted(labels + pruned) == sorted(assembled.residual_labels)
    assert "tokens:compiler_pad" in pruned if path == "fast" else pruned == []
    kept = [assembled.residual_labels.index(label) for label in labels]
    assert kept == sorted(kept)
    for tokens in probe_inputs(name):
        tokens = _python(tokens)
        out = assembled.apply(tokens)
        theirs = [np.asarray(r[0])[:, kept] for r in out.residuals]
        mine = [r.numpy() for r in ours.residuals(tokens)]
        # Ours: the embedding, then after each sublayer; Tracr: after each sublayer. The
        # blocks line up one to one (same packing), zero-filled slots included.
        assert len(mine) == len(theirs) + 1
        embedded = np.asarray(out.input_embeddings[0])[:, kept]
        assert np.abs(mine[0] - embedded).max() <= 1e-5
        for a, b in zip(mine[1:], theirs, strict=True):
            assert np.abs(a - b).max() <= 1e-5
        decoded = ours.run(tokens)
        if ours.categorical:
            assert decoded == out.decoded
        else:
            assert np.allclose(decoded[1:], out.decoded[1:], atol=1e-5)


def test_slow_path_keeps_tracr_sublayers_in_order() -> None:
    assembled, _ = haiku("reverse")
    model = from_assembled(assembled)
    assert model.model.cfg.n_layers == assembled.model_config.num_layers
    # every sublayer Tracr leaves at zero is reported as removed
    assert model.report["removed_noop_sublayers"] == ["attn@2", "attn@4", "mlp@7"]
    assert model.report["zero_filled_slots"] == ["L1.attn", "L2.attn", "L3.mlp"]
    pruned = from_assembled(assembled, prune_residual=True)
    assert pruned.model.layout == fast("reverse")[0].model.layout
    assert pruned.run(["BOS", "a", "b", "c"]) == ["BOS", "c", "b", "a"]


def test_fast_path_is_no_larger_than_tracr() -> None:
    for name in PARITY:
        ours = fast(name)[0].model
        assembled, _ = haiku(name)
        theirs = sum(
            int(np.prod(w.shape)) for mod in assembled.params.values() for w in mod.values()
        )
        assert ours.cfg.n_layers == assembled.model_config.num_layers
        assert ours.cfg.d_model < len(assembled.residual_labels)  # compiler_pad at least
        assert ours.n_params() <= theirs


def test_pruning_makes_nary_sequencemap_smaller_than_tracr() -> None:
    """Unpruned, ours was 22348 parameters against Tracr's 22270 (our W_U, which Tracr
    lacks); Tracr's count comes from ``benchmarks/tracr.py`` (a Haiku compile is slow)."""
    tracr_params = 22270
    program, vocab = program_of("nary_sequencemap"), LIB["nary_sequencemap"].vocab
    full = from_rasp(program, vocab, 5, prune_residual=False)
    assert full.model.n_params() > tracr_params and full.report["pruned_directions"] == []
    pruned, _ = fast("nary_sequencemap")
    assert pruned.model.n_params() < tracr_params
    # no attention reads BOS (the program has none), nothing reads compiler_pad
    assert pruned.report["pruned_directions"] == ["tokens:BOS", "tokens:compiler_pad"]
    assert pruned.model.cfg.d_model == full.model.cfg.d_model - len(
        pruned.report["pruned_directions"]
    )
    assert check(pruned, program, vocab).agreement == 1.0


def test_unembedding_reads_the_output_space_not_the_first_columns() -> None:
    model, _ = fast("length")  # outputs 0..5: values unlike the input tokens
    layout = model.model.layout
    w_u = model.model.unembed.W_U.detach()
    out_dirs = layout.named(model.model.meta["output_space"][0].split(":")[0])
    assert w_u.shape == (len(layout), len(out_dirs))
    for j, d in enumerate(out_dirs):
        col = torch.zeros(len(layout))
        col[layout.index(d)] = 1.0
        assert torch.equal(w_u[:, j], col)
    assert model.run(["BOS", "a", "b", "c"]) == ["BOS", 3, 3, 3]


def test_numerical_output_decodes_floats() -> None:
    model, _ = fast("frac_prevs")
    got = model.run(["BOS", "h", "e", "l", "l", "o"])
    assert got[0] == "BOS"
    assert np.allclose(got[1:], [0.0, 0.0, 1 / 3, 1 / 2, 2 / 5], atol=1e-5)


def test_save_load_round_trip(tmp_path: Path) -> None:
    model, _ = fast("sort")
    path = tmp_path / "sort.safetensors"
    model.save(path)
    loaded = TracrModel.load(path)
    assert loaded.tokens == model.tokens and loaded.output_values == model.output_values
    assert loaded.model.layout == model.model.layout
    assert loaded.model.meta["output_encoding"] == "categorical"
    assert loaded.run(["BOS", 3, 1, 2]) == model.run(["BOS", 3, 1, 2]) == ["BOS", 1, 2, 3]


def _zero_mlp(d: int, m: int, live: bool) -> Sublayer:
    w_out = np.ones((m, d)) if live else np.zeros((m, d))
    return Sublayer(kind="mlp", w_in=np.ones((d, m)), w_out=w_out)


def _attn(d: int, live: bool) -> Sublayer:
    w = np.ones((d, 2)) if live else np.zeros((d, 2))
    return Sublayer(kind="attn", heads=(Head(w_q=w, w_k=w, w_v=w, w_o=w.T),))


def test_pack_drops_noops_and_merges_their_neighbours() -> None:
    d = 3
    subs = (_attn(d, True), _zero_mlp(d, 2, False), _attn(d, False), _zero_mlp(d, 2, True))
    packed = pack(subs)
    assert packed.removed == ("mlp@1", "attn@2")
    assert len(packed.blocks) == 1  # attn and the live MLP share one block
    assert packed.zero_slots == ()
    kept = pack(subs, remove_noops=False)
    assert len(kept.blocks) == 2 and kept.removed == ()
