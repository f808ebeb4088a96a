"""Importers: synthetic TransformerLens and bilinear toy state dicts against independent
reference forward passes, file reading without pickle, errors, and the CLI subcommand."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from craft import import_cli
from craft.cli import main
from craft.importers import (
    _rope,
    bilinear_reference,
    check_import,
    import_bilinear_toy,
    import_tlens,
    read_state_dict,
    tlens_reference,
)
from craft.models import load_model
from craft.models.transformer import rotary
from specs.errors import CraftError
from tests.craft.test_cli import assert_one_error_line

EXACT = 1e-10  # float64 against float64: only rounding separates the two passes


pytestmark = pytest.mark.usefixtures("one_thread")


def tlens_sd(seed=0, layers=2, heads=3, d=8, e=4, vocab=11, ctx=12, bias=True, pos=True):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.4

    sd = {"embed.W_E": r(vocab, d), "unembed.W_U": r(d, vocab - 1)}
    if pos:
        sd["pos_embed.W_pos"] = r(ctx, d)
    for i in range(layers):
        p = f"blocks.{i}.attn."
        sd |= {p + n: r(heads, d, e) for n in ("W_Q", "W_K", "W_V")} | {p + "W_O": r(heads, e, d)}
        sd[p + "mask"] = torch.ones(ctx, ctx, dtype=torch.bool).tril()  # TL buffers
        sd[p + "IGNORE"] = torch.tensor(-1e5)
        if bias:
            sd |= {p + n: r(heads, e) for n in ("b_Q", "b_K", "b_V")} | {p + "b_O": r(d)}
    if bias:
        sd["unembed.b_U"] = r(vocab - 1)
    return sd


def bilinear_sd(seed=0, layers=2, heads=2, d=8, e=4, vocab=13, mlp=6):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.35

    sd = {"embed.weight": r(vocab, d), "lm_head.weight": r(vocab, d)}
    for i in range(layers):
        p = f"blocks.{i}.attn."
        sd |= {p + f"{n}.weight": r(heads * e, d) for n in ("q1", "k1", "q2", "k2", "v")}
        sd[p + "out.weight"] = r(d, heads * e)
        if mlp:
            m = f"blocks.{i}.mlp."
            sd |= {m + "left.weight": r(mlp, d), m + "right.weight": r(mlp, d)}
            sd[m + "down.weight"] = r(d, mlp)
    return sd


TLENS_CASES = {
    "biases": {},
    "no-bias": {"bias": False},
    "no-positions": {"pos": False},
    "one-layer": {"layers": 1, "heads": 1},
}


@pytest.mark.parametrize("case", sorted(TLENS_CASES))
@pytest.mark.parametrize("causal", [True, False])
def test_tlens_matches_reference(case: str, causal: bool) -> None:
    sd = tlens_sd(**TLENS_CASES[case])
    model = import_tlens(sd, n_ctx=None if "pos_embed.W_pos" in sd else 12, causal=causal)
    assert model.cfg.family == "standard" and model.cfg.n_out == 10
    assert model.cfg.bias == TLENS_CASES[case].get("bias", True)
    check = check_import(lambda t: tlens_reference(sd, t, causal=causal), model, 11, 12)
    assert check.max_abs_diff < EXACT and check.max_abs_logit > 0.1 and check.ok()


@pytest.mark.parametrize("mlp", [0, 6])
@pytest.mark.parametrize("rotary_on", [True, False])
def test_bilinear_matches_reference(mlp: int, rotary_on: bool) -> None:
    sd = bilinear_sd(mlp=mlp)
    model = import_bilinear_toy(sd, n_heads=2, n_ctx=20, rotary=rotary_on)
    assert model.cfg.family == "tensor" and model.cfg.d_mlp == mlp
    assert model.cfg.positions == ("rotary" if rotary_on else "none")
    ref = lambda t: bilinear_reference(sd, t, n_heads=2, rotary=rotary_on)  # noqa: E731
    check = check_import(ref, model, 13, 20, length=20)
    assert check.max_abs_diff < EXACT * check.max_abs_logit and check.max_abs_logit > 0.1


def test_references_catch_wrong_conversions() -> None:
    sd = bilinear_sd(mlp=0)
    wrong_heads = import_bilinear_toy(sd, n_heads=4, n_ctx=20)  # d_head 2 instead of 4
    ref = lambda t: bilinear_reference(sd, t, n_heads=2)  # noqa: E731
    assert not check_import(ref, wrong_heads, 13, 20).ok()
    no_rotary = import_bilinear_toy(sd, n_heads=2, n_ctx=20, rotary=False)
    assert not check_import(ref, no_rotary, 13, 20).ok()
    tl = tlens_sd()
    bidirectional = import_tlens(tl, causal=False)
    assert not check_import(lambda t: tlens_reference(tl, t), bidirectional, 11, 12).ok()


def test_rope_is_relative_and_matches_the_model() -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 8, dtype=torch.float64, generator=g)
    dot = lambda a, b: float((_rope(q, a, 1e4) * _rope(k, b, 1e4)).sum())  # noqa: E731
    assert abs(dot(5, 2) - dot(13, 10)) < 1e-12 and abs(dot(5, 2) - dot(5, 3)) > 1e-6
    x = torch.randn(1, 6, 1, 8, dtype=torch.float64, generator=g)
    ours = rotary(x, 1e4)[0, :, 0]
    assert torch.allclose(ours, torch.stack([_rope(x[0, t, 0], t, 1e4) for t in range(6)]))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda sd: sd.pop("blocks.1.attn.W_V"), "blocks.1.attn.W_V: missing tensor"),
        (lambda sd: sd.update({"blocks.0.attn.W_O": torch.zeros(3, 4, 9)}), r"W_O: shape"),
        (lambda sd: sd.update({"ln_final.w": torch.ones(8)}), "ln_final.w: unsupported"),
        (lambda sd: sd.update({"blocks.0.mlp.W_in": torch.ones(8, 4)}), "mlp.W_out: missing"),
        (lambda sd: sd.update({"blocks.0.mlp.W_gate": torch.ones(8, 4)}), "W_gate: unsupp"),
        (lambda sd: sd.pop("unembed.W_U"), "unembed.W_U: missing"),
        (lambda sd: sd.pop("pos_embed.W_pos"), "n_ctx None is not available"),
        (lambda sd: sd.update({"blocks.3.attn.W_Q": torch.ones(3, 8, 4)}), "not numbered"),
    ],
)
def test_tlens_errors(edit, match: str) -> None:
    sd = tlens_sd()
    edit(sd)
    with pytest.raises(CraftError, match=match):
        import_tlens(sd)


@pytest.mark.parametrize(
    ("edit", "kwargs", "match"),
    [
        (lambda sd: sd.pop("blocks.0.attn.k2.weight"), {}, "k2.weight: missing"),
        (lambda sd: sd.update({"blocks.0.attn.q1.bias": torch.ones(8)}), {}, "q1.bias: unsupp"),
        (lambda sd: sd.update({"blocks.1.norm.weight": torch.ones(8)}), {}, "norm.weight"),
        (lambda sd: sd.pop("blocks.1.mlp.down.weight"), {}, "down.weight: missing"),
        (lambda sd: None, {"n_heads": 3}, "do not split into 3 heads"),
        (lambda sd: None, {"n_heads": 8}, "even d_head"),
        (lambda sd: sd.update({"lm_head.weight": torch.ones(13, 7)}), {}, "lm_head.weight: shape"),
    ],
)
def test_bilinear_errors(edit, kwargs: dict, match: str) -> None:
    sd = bilinear_sd()
    edit(sd)
    with pytest.raises(CraftError, match=match):
        import_bilinear_toy(sd, **({"n_heads": 2} | kwargs))


# tensors of the wrong rank or with an empty dimension: (format, tensor, value, shape expected)
WRONG_RANK = [
    ("tlens", "embed.W_E", torch.ones(8), "[V, D]"),
    ("tlens", "embed.W_E", torch.ones(11, 8, 1), "[V, D]"),
    ("tlens", "embed.W_E", torch.ones(0, 8), "[V, D]"),
    ("tlens", "blocks.0.attn.W_Q", torch.ones(3, 8, 4, 1), "[H, D, E]"),
    ("tlens", "blocks.0.attn.W_Q", torch.ones(8, 4), "[H, D, E]"),
    ("tlens", "blocks.1.attn.W_Q", torch.ones(3, 8, 4, 1), "[3, 8, 4]"),
    ("tlens", "blocks.0.attn.b_Q", torch.ones(3), "[3, 4]"),
    ("tlens", "unembed.W_U", torch.ones(8), "[D, O]"),
    ("tlens", "unembed.b_U", torch.ones(10, 1), "[10]"),
    ("tlens", "pos_embed.W_pos", torch.tensor(1.0), "[P, D]"),
    ("bilinear-toy", "embed.weight", torch.ones(8), "[V, D]"),
    ("bilinear-toy", "blocks.0.attn.q1.weight", torch.ones(8), "[HE, D]"),
    ("bilinear-toy", "blocks.0.attn.q1.weight", torch.ones(2, 4, 8), "[HE, D]"),
    ("bilinear-toy", "blocks.1.attn.out.weight", torch.ones(8, 8, 1), "[8, 8]"),
    ("bilinear-toy", "blocks.0.mlp.left.weight", torch.ones(6), "[M, D]"),
    ("bilinear-toy", "lm_head.weight", torch.ones(13), "[O, D]"),
]


@pytest.mark.parametrize(("fmt", "key", "value", "expected"), WRONG_RANK)
def test_wrong_rank_is_one_error_naming_tensor_and_shapes(
    tmp_path: Path, capsys, fmt: str, key: str, value: torch.Tensor, expected: str
) -> None:
    sd = tlens_sd() if fmt == "tlens" else bilinear_sd()
    sd[key] = value
    with pytest.raises(CraftError, match=re.escape(f"{key}: shape {list(value.shape)}, expected")):
        if fmt == "tlens":
            import_tlens(sd)
        else:
            import_bilinear_toy(sd, n_heads=2)
    path, out = tmp_path / "bad.safetensors", tmp_path / "out.safetensors"
    save_file(sd, path)
    argv = ["import", str(path), "--format", fmt, "-o", str(out), "--n-heads", "2"]
    code = main(argv)
    _, err = capsys.readouterr()
    assert_one_error_line(code, err, f"{path}: {key}: shape {list(value.shape)}", expected)
    assert not out.exists()


class _Payload:
    """Unpickling this would create a file: ``weights_only`` must refuse it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_read_state_dict_formats_and_refusals(tmp_path: Path) -> None:
    sd = tlens_sd(bias=False)
    save_file(sd, tmp_path / "m.safetensors")
    torch.save({"state_dict": sd}, tmp_path / "m.pt")
    for name in ("m.safetensors", "m.pt"):
        got = read_state_dict(tmp_path / name)
        assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    marker = tmp_path / "pwned"
    torch.save({"x": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CraftError, match="evil.pt: cannot read tensors"):
        read_state_dict(tmp_path / "evil.pt")
    assert not marker.exists()
    torch.save({"lr": 0.1, "w": torch.ones(2)}, tmp_path / "mixed.pth")
    with pytest.raises(CraftError, match="not a flat dict of tensors"):
        read_state_dict(tmp_path / "mixed.pth")
    (tmp_path / "m.txt").write_text("hi")
    with pytest.raises(CraftError, match="unknown file type"):
        read_state_dict(tmp_path / "m.txt")
    with pytest.raises(CraftError, match="no such file"):
        read_state_dict(tmp_path / "absent.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(CraftError, match="cannot read tensors"):
        read_state_dict(tmp_path / "bad.safetensors")


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="craft")
    import_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["import", *argv])


def test_cli_imports_checks_and_saves(tmp_path: Path, capsys) -> None:
    sd = tlens_sd()
    torch.save(sd, tmp_path / "tl.pt")
    out = tmp_path / "tl.safetensors"
    assert import_cli.run(_cli(str(tmp_path / "tl.pt"), "--format", "tlens", "-o", str(out))) == 0
    assert "max |difference|" in capsys.readouterr().out
    model = load_model(out)
    tokens = torch.randint(0, 11, (2, 12))
    with torch.no_grad():
        assert torch.allclose(model(tokens).double(), tlens_reference(sd, tokens), atol=1e-4)
    assert model.meta["imported"]["format"] == "tlens"

    save_file(bilinear_sd(), tmp_path / "bl.safetensors")
    args = _cli(str(tmp_path / "bl.safetensors"), "--format", "bilinear-toy", "--n-heads", "2",
                "--n-ctx", "64", "-o", str(tmp_path / "b.safetensors"), "--json")  # fmt: skip
    assert import_cli.run(args) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["check"]["passed"] and obj["family"] == "tensor" and obj["config"]["n_ctx"] == 64
    assert load_model(tmp_path / "b.safetensors").cfg.positions == "rotary"


def test_cli_failures(tmp_path: Path, capsys, monkeypatch) -> None:
    save_file(bilinear_sd(), tmp_path / "bl.safetensors")
    out = tmp_path / "b.safetensors"
    with pytest.raises(CraftError, match="--n-heads"):
        import_cli.run(_cli(str(tmp_path / "bl.safetensors"), "--format", "bilinear-toy",
                            "-o", str(out)))  # fmt: skip
    torch.save(tlens_sd(), tmp_path / "tl.pt")
    # a conversion bug, simulated: the source's logits disagree with the converted model's
    monkeypatch.setattr(
        import_cli, "tlens_reference", lambda sd, t, causal: tlens_reference(sd, t) * 1.01
    )
    args = _cli(str(tmp_path / "tl.pt"), "--format", "tlens", "-o", str(out))
    assert import_cli.run(args) == import_cli.EXIT_FAILED
    assert "nothing written" in capsys.readouterr().err and not out.exists()
