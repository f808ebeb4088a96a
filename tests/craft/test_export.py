"""craft export --format tlens: TransformerLens 4 loads the files with its own code
(``boot_native`` + ``convert_tl_checkpoint`` + ``load_state_dict(strict=True)``) and
computes craft's logits; its string APIs, head detector and activation patching work on
the export; export -> import reproduces the model; TransformerLens 4 bridge state dicts
import; the tensor family is refused in one line.

Models: a crafted toy-language model (ReLU MLPs), the trained toy-language model in
``examples/`` (biases, attention-only) and two Tracr conversions (bidirectional)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformer_lens")
from safetensors.torch import load_file  # noqa: E402
from transformer_lens.config import TransformerBridgeConfig  # noqa: E402
from transformer_lens.model_bridge import TransformerBridge  # noqa: E402
from transformer_lens.utilities.tl_checkpoint_conversion import (  # noqa: E402
    convert_tl_checkpoint,
)

from craft.cli import main  # noqa: E402
from craft.compiler import compile_spec  # noqa: E402
from craft.models import ComponentKind, component_records, load_model, save_model  # noqa: E402
from craft.tlens import CONFIG_KEYS  # noqa: E402
from specs import library_path, load_spec  # noqa: E402
from verify.matching import match_all  # noqa: E402

logging.getLogger("absl").setLevel(logging.ERROR)
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads only contend
TOY = library_path("toy_language")
TRAINED = Path(__file__).parents[2] / "examples/diff_toy_language/trained_standard.safetensors"
MODELS = ["crafted", "trained", "tracr-sort", "tracr-hist"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Each model saved as a craft file (compiled once for the module)."""
    from craft.tracr import from_rasp
    from craft.tracr.library import lib_programs

    out = tmp_path_factory.mktemp("models")
    spec = load_spec(TOY)
    save_model(compile_spec(spec, "standard").model, out / "crafted.safetensors")
    lib = {p.name: p for p in lib_programs()}
    for name in ("sort", "hist"):
        from_rasp(lib[name].build(5), lib[name].vocab, 5).save(out / f"tracr-{name}.safetensors")
    return {"trained": TRAINED} | {n: out / f"{n}.safetensors" for n in MODELS[:1] + MODELS[2:]}


@pytest.fixture(scope="module")
def exported(files, tmp_path_factory) -> dict[str, Path]:
    """``craft export`` of every model (the toy-language ones with --spec)."""
    out = tmp_path_factory.mktemp("exports")
    for name, path in files.items():
        spec = ["--spec", str(TOY)] if name in ("crafted", "trained") else []
        argv = ["export", str(path), "--format", "tlens", "-o", str(out / name), *spec]
        assert main(argv) == 0
    return {name: out / name for name in files}


def boot(folder: Path, dtype: torch.dtype = torch.float32):
    """The documented snippet: TransformerLens' own code and nothing else."""
    from transformers import AutoTokenizer

    cfg = TransformerBridgeConfig(**json.loads((folder / "config.json").read_text()))
    has_tokenizer = (folder / "tokenizer.json").exists()
    tokenizer = AutoTokenizer.from_pretrained(folder) if has_tokenizer else None
    model = TransformerBridge.boot_native(cfg, tokenizer=tokenizer, dtype=dtype).eval()
    state = {k: v.to(dtype) for k, v in load_file(folder / "model.safetensors").items()}
    result = model.load_state_dict(convert_tl_checkpoint(state, cfg), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return model


def tokens_for(model, n: int = 6, seed: int = 0) -> torch.Tensor:
    """Random token ids, BOS-free, every position the model has (Tracr: all 6)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.cfg.n_vocab, (n, min(40, model.cfg.n_ctx)), generator=g)


@pytest.mark.parametrize("name", MODELS)
def test_transformer_lens_loads_the_export_with_craft_logits(name, files, exported) -> None:
    ours = load_model(files[name])
    config = json.loads((exported[name] / "config.json").read_text())
    assert tuple(config) == CONFIG_KEYS
    assert config["attention_dir"] == ("bidirectional" if "tracr" in name else "causal")
    tokens = tokens_for(ours)
    with torch.no_grad():
        logits = ours(tokens)
        diff32 = (boot(exported[name])(tokens) - logits).abs().max() / logits.abs().max()
        bridge64 = boot(exported[name], torch.float64)
        diff64 = (bridge64(tokens) - ours.double()(tokens)).abs().max()
    # float32: 1e-5 of the largest logit (the trained model's reach 30: 1.2e-5 absolute)
    assert float(diff32) < 1e-5 and float(diff64) < 1e-10, (diff32, diff64)


def test_tokenizer_string_apis_and_head_detector(files, exported) -> None:
    from transformer_lens.head_detector import detect_head

    spec = load_spec(TOY)
    bridge = boot(exported["crafted"])
    text = "the alice sees bob . bob helps the carol"
    ids = bridge.to_tokens(text)[0].tolist()
    assert ids == [spec.vocab.bos_id, *(spec.vocab.index(t) for t in text.split())]
    assert bridge.to_str_tokens(text) == ["<bos>", *text.split()]
    scores = detect_head(bridge, text, "previous_token_head")  # [layer, head]
    prev = next(r for r in component_records(load_model(files["crafted"]))
                if r.kind == ComponentKind.PREVIOUS_TOKEN)  # fmt: skip
    assert int(scores.flatten().argmax()) == prev.layer * bridge.cfg.n_heads + prev.head
    sort = boot(exported["tracr-sort"])
    assert sort.to_str_tokens("3 1 2") == ["BOS", "3", "1", "2"]


def test_tlens_head_patching_agrees_with_craft_diff_match(files, exported) -> None:
    """Patch every head's output from a clean into a corrupt induction context with
    TransformerLens' own patching; the head that restores the most is the trained head
    ``verify.matching`` matches to the crafted induction head."""
    from transformer_lens import patching

    from specs.sample import sample
    from verify.batched import pad
    from verify.patching import pairs

    spec = load_spec(TOY)
    bridge = boot(exported["trained"], torch.float64)
    clean, bad = pairs(spec, "noun-induction", 24, seed=0)  # one same-category swap each
    tok_c = torch.from_numpy(pad(spec, clean)[0])
    tok_k = torch.from_numpy(pad(spec, bad)[0])
    last = torch.tensor([len(c) for c in clean])
    answer = torch.tensor([c[c.index(c[-1]) + 1] for c in clean])  # what followed it first

    def metric(logits: torch.Tensor) -> torch.Tensor:
        lp = logits[torch.arange(len(last)), last].log_softmax(-1)
        return lp[torch.arange(len(last)), answer].mean()

    _, cache = bridge.run_with_cache(tok_c)
    effect = patching.get_act_patch_attn_head_out_all_pos(bridge, tok_k, cache, metric)
    best = divmod(int(effect.flatten().argmax()), bridge.cfg.n_heads)
    with torch.no_grad():
        clean_m, corrupt_m = float(metric(bridge(tok_c))), float(metric(bridge(tok_k)))
    restored = (float(effect.max()) - corrupt_m) / (clean_m - corrupt_m)
    assert clean_m - corrupt_m > 1 and restored > 0.9, (clean_m, corrupt_m, effect)
    crafted, trained = load_model(files["crafted"]).double(), load_model(files["trained"]).double()
    _, matches = match_all(crafted, trained, spec, sample(spec, 16, 48, 0)[0])
    induction = next(m for m in matches if m.component.kind == ComponentKind.INDUCTION)
    assert best in induction.heads, (best, induction.heads, effect)


@pytest.mark.parametrize("name", MODELS)
def test_export_then_import_reproduces_the_model(name, files, exported, tmp_path) -> None:
    back = tmp_path / "back.safetensors"
    assert main(["import", str(exported[name]), "--format", "tlens", "-o", str(back)]) == 0
    a, b = load_model(files[name]), load_model(back)
    assert a.cfg == b.cfg
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_bridge_state_dict_imports(exported, files, tmp_path, capsys) -> None:
    """``bridge.state_dict()`` (TransformerLens 4 keys, heads side by side) with MLPs."""
    from safetensors.torch import save_file

    bridge = boot(exported["crafted"])
    sd = {k: v.contiguous() for k, v in bridge.state_dict().items()}
    assert "blocks.0.attn.q.weight" in sd and "blocks.0.mlp.in.weight" in sd
    save_file(sd, tmp_path / "bridge.safetensors")
    out = tmp_path / "m.safetensors"
    argv = ["import", str(tmp_path / "bridge.safetensors"), "--format", "tlens", "-o", str(out)]
    assert main(argv) == 2
    assert "--n-heads" in capsys.readouterr().err
    assert main([*argv, "--n-heads", str(bridge.cfg.n_heads), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "craft-import/1" and report["check"]["passed"]
    tokens = tokens_for(load_model(files["crafted"]))
    with torch.no_grad():
        diff = (load_model(out)(tokens) - load_model(files["crafted"])(tokens)).abs().max()
    assert float(diff) < 1e-5


def test_tensor_family_is_refused_in_one_line(tmp_path, capsys) -> None:
    spec = load_spec(library_path("induction"))
    save_model(compile_spec(spec, "tensor").model, tmp_path / "t.safetensors")
    code = main(["export", str(tmp_path / "t.safetensors"), "--format", "tlens", "-o",
                 str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "no TransformerLens counterpart" in err and not (tmp_path / "out").exists()


def test_export_json_and_refusals(files, tmp_path, capsys) -> None:
    argv = ["export", str(files["crafted"]), "--format", "tlens", "--json"]
    assert main([*argv, "-o", str(tmp_path / "e"), "--spec", str(TOY)]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["format"] == "craft-export/1" and obj["check"]["passed"]
    assert obj["spec"]["name"] == "toy-language" and len(obj["spec"]["sha256"]) == 64
    assert obj["tokenizer"]["tokens"] == 51
    assert main([*argv, "-o", str(files["crafted"])]) == 2  # the output would be the input
    assert "destroy the input" in capsys.readouterr().err
    other = library_path("induction")
    assert main([*argv, "-o", str(tmp_path / "f"), "--spec", str(other)]) == 2
    assert "the model embeds 51" in capsys.readouterr().err
    assert np.isfinite(obj["check"]["max_abs_diff"])


def _readme_block(marker: str) -> str:
    """The README's python block that contains ``marker``."""
    text = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    (block,) = [b for b in blocks if marker in b]
    return block


def test_readme_snippet_loads_the_export(files, exported) -> None:
    """The documented TransformerLens snippet, as printed, on a real export."""
    code = _readme_block("boot_native").replace('"DIR', f'"{exported["crafted"]}')
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # the documentation under test
    tokens = tokens_for(load_model(files["crafted"]))
    with torch.no_grad():
        diff = (scope["model"](tokens) - load_model(files["crafted"])(tokens)).abs().max()
    assert float(diff) < 1e-4 and len(code.strip().splitlines()) == 6


def test_readme_nnsight_snippet_runs(files, tmp_path) -> None:
    """nnsight reads a trace's source from its file, so the snippet runs from one."""
    import runpy

    model = load_model(files["crafted"]).double()
    clean, corrupt = torch.tensor([[50, 40, 0, 16]]), torch.tensor([[50, 40, 1, 16]])
    script = tmp_path / "snippet.py"
    script.write_text(_readme_block("nnsight_model"), encoding="utf-8")
    scope = {"model": model, "clean": clean, "corrupt": corrupt}
    out = runpy.run_path(str(script), init_globals=scope)
    assert out["patched"].shape == (1, 4, 50)
