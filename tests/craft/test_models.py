"""The two model families: forward semantics against hand-written references, hooks,
masks, rotary positions and safetensors round trips."""

from __future__ import annotations

import math

import pytest
import torch

from craft.models import ModelConfig, Transformer, hooks, load_model, run_with_cache, save_model
from craft.models.layout import Direction, Layout
from craft.models.transformer import rotary
from specs.errors import CraftError


def make(family="standard", causal=True, positions="learned", seed=0, d_mlp=6):
    cfg = ModelConfig(
        family=family,
        n_layers=2,
        n_heads=2,
        d_model=8,
        d_head=4,
        d_mlp=d_mlp,
        n_vocab=5,
        n_out=4,
        n_ctx=6,
        causal=causal,
        positions=positions,
    )
    torch.manual_seed(seed)
    m = Transformer(cfg).double()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return m


def reference(m: Transformer, tokens: torch.Tensor) -> torch.Tensor:
    """A loop-per-position reimplementation of both families, for one sequence."""
    cfg = m.cfg
    x = m.embed.W_E[tokens]
    if cfg.positions == "learned":
        x = x + m.pos_embed.W_pos[: len(tokens)]
    t_len = len(tokens)
    for blk in m.blocks:
        a = blk.attn
        out = torch.zeros_like(x)
        for h in range(cfg.n_heads):
            if cfg.family == "standard":
                q = x @ a.W_Q[h] + a.b_Q[h]
                k = x @ a.W_K[h] + a.b_K[h]
                v = x @ a.W_V[h] + a.b_V[h]
                s = q @ k.T / math.sqrt(cfg.d_head)
                if cfg.causal:
                    s = s + torch.triu(torch.full((t_len, t_len), -math.inf), 1).double()
                pat = s.softmax(-1)
            else:
                qs = [x @ a.W_Q1[h], x @ a.W_K1[h], x @ a.W_Q2[h], x @ a.W_K2[h]]
                if cfg.positions == "rotary":
                    qs = [rotary(z[None, :, None, :], cfg.rotary_base)[0, :, 0] for z in qs]
                pat = (qs[0] @ qs[1].T) * (qs[2] @ qs[3].T) / cfg.d_head**2
                if cfg.causal:
                    pat = pat * torch.tril(torch.ones(t_len, t_len)).double()
                v = x @ a.W_V[h]
            out = out + pat @ v @ a.W_O[h]
        x = x + out + (a.b_O if cfg.family == "standard" else 0)
        if blk.mlp is not None:
            mp = blk.mlp
            if cfg.family == "standard":
                x = x + torch.relu(x @ mp.W_in + mp.b_in) @ mp.W_out + mp.b_out
            else:
                x = x + ((x @ mp.W_L) * (x @ mp.W_R)) @ mp.W_D
    logits = x @ m.unembed.W_U
    return logits + m.unembed.b_U if cfg.family == "standard" else logits


@pytest.mark.parametrize(
    "family,causal,positions",
    [
        ("standard", True, "learned"),
        ("standard", False, "learned"),
        ("tensor", True, "learned"),
        ("tensor", True, "rotary"),
        ("tensor", False, "learned"),
    ],
)
def test_forward_matches_reference(family, causal, positions):
    m = make(family, causal, positions)
    tokens = torch.tensor([[4, 0, 3, 1, 2, 0], [4, 1, 1, 2, 3, 3]])
    got = m(tokens)
    for b in range(2):
        torch.testing.assert_close(got[b], reference(m, tokens[b]), rtol=1e-9, atol=1e-9)


def test_causal_models_do_not_look_ahead():
    for family in ("standard", "tensor"):
        m = make(family)
        a, b = torch.tensor([[4, 0, 1, 2, 3, 0]]), torch.tensor([[4, 0, 1, 3, 0, 1]])
        torch.testing.assert_close(m(a)[0, :3], m(b)[0, :3])
        m_bi = make(family, causal=False)
        assert not torch.allclose(m_bi(a)[0, :3], m_bi(b)[0, :3])


def test_hooks_read_and_patch():
    m = make("standard")
    tokens = torch.tensor([[4, 0, 3, 1]])
    logits, cache = run_with_cache(m, tokens)
    assert cache["blocks.0.attn.hook_pattern"].shape == (1, 2, 4, 4)
    assert cache["blocks.1.attn.hook_result"].shape == (1, 4, 2, 8)
    torch.testing.assert_close(
        cache["blocks.0.attn.hook_pattern"].sum(-1), torch.ones(1, 2, 4).double()
    )
    resid = cache["blocks.1.hook_resid_post"]
    torch.testing.assert_close(resid @ m.unembed.W_U + m.unembed.b_U, logits)
    with hooks(m, {"blocks.1.hook_attn_out": lambda mod, i, o: torch.zeros_like(o)}):
        patched = m(tokens)
    assert not torch.allclose(patched, logits)
    with pytest.raises(CraftError), hooks(m, {"blocks.9.nothing": lambda *a: None}):
        pass


@pytest.mark.parametrize("family", ["standard", "tensor"])
def test_safetensors_round_trip(tmp_path, family):
    m = make(family).float()
    m.layout = Layout(tuple(Direction("d", i) for i in range(8)))
    m.meta = {"spec": {"name": "x"}}
    path = tmp_path / "m.safetensors"
    save_model(m, path)
    back = load_model(path)
    tokens = torch.tensor([[4, 1, 2]])
    torch.testing.assert_close(back(tokens), m(tokens))
    assert back.cfg == m.cfg and back.layout == m.layout and back.meta == m.meta
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_bad_model_files(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    for path in (junk, tmp_path / "missing.safetensors"):
        with pytest.raises(CraftError):
            load_model(path)


def test_config_validation():
    with pytest.raises(CraftError):
        ModelConfig(
            family="lstm",
            n_layers=1,
            n_heads=1,
            d_model=2,
            d_head=2,
            d_mlp=0,
            n_vocab=2,
            n_out=2,
            n_ctx=2,
        )
    with pytest.raises(CraftError):
        ModelConfig(
            family="standard",
            n_layers=1,
            n_heads=1,
            d_model=2,
            d_head=2,
            d_mlp=0,
            n_vocab=2,
            n_out=2,
            n_ctx=2,
            positions="rotary",
        )
    with pytest.raises(CraftError):
        Layout((Direction("a"), Direction("a")))


def test_config_and_hook_errors_name_the_fix() -> None:
    """Issue #11, class 10: these messages said what was wrong but not what to do."""
    from specs.errors import CraftError

    with pytest.raises(CraftError, match=r"config.d_model must be >= 1, got 0; fix: .*re-create"):
        ModelConfig("standard", 1, 1, 0, 1, 0, 3, 3, 4)
    with pytest.raises(CraftError, match=r"unknown model family 'dense'.*; fix: use 'standard'"):
        ModelConfig("dense", 1, 1, 4, 1, 0, 3, 3, 4)
    model = Transformer(ModelConfig("standard", 1, 1, 4, 4, 0, 3, 3, 4))
    with (
        pytest.raises(CraftError, match=r"no hook point 'blocks.9.x'; fix: use one of its"),
        hooks(model, {"blocks.9.x": lambda *a: None}),
    ):
        pass
