"""Model-file headers are untrusted input: every malformed header is one CLI error line.

A crafted model file is rewritten with the same tensors and an edited JSON header (one
edit per failure class: sizes that do not match the tensors, fields of the wrong type,
a malformed layout or meta); ``craft inspect`` and ``craft eval`` must exit with code 2
and one ``craft: error:`` line naming the file, never a traceback, and a header that
claims a billion layers must be refused before anything is allocated.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import specs
from craft.cli import main
from craft.models import load_model, read_header
from specs.errors import CraftError
from tests.craft.test_cli import assert_one_error_line

SPEC = str(specs.library_path("skip_trigram"))  # 1 layer, 3 heads, an MLP, components

Edit = Callable[[dict[str, Any]], Any]


def _set(*args: Any) -> Edit:
    """``_set(k1, ..., kn, value)``: the edit ``header[k1]...[kn] = value``."""
    *path, value = args

    def edit(header: dict[str, Any]) -> None:
        node = header
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _drop(*path: Any) -> Edit:
    def edit(header: dict[str, Any]) -> None:
        node = header
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return edit


def _record(**fields: Any) -> Edit:
    """Replace the first component record's fields."""
    return lambda h: h["meta"]["components"][0].update(fields)


# an interference record whose margin 1 / (low - high) the CLI could not print
FLAT = {"head": "h", "reads": "tok", "member": "a", "other": "b", "rules": [], "low": 1, "high": 1}

# (case, edit of the header, what the error line must say)
CASES: list[tuple[str, Edit, str]] = [
    # sizes that do not match the stored tensors (none of them allocated)
    ("a billion layers", _set("config", "n_layers", 10**9), "blocks.1.attn.W_Q"),
    ("huge d_model", _set("config", "d_model", 2**30), "embed.W_E"),
    ("huge n_ctx", _set("config", "n_ctx", 10**9), "pos_embed.W_pos"),
    ("sizes past 32 bits", _set("config", "d_model", 10**12), "d_model is 1000000000000"),
    ("huge n_heads", _set("config", "n_heads", 2**31 - 1), "blocks.0.attn.W_Q"),
    ("n_heads off by one", _set("config", "n_heads", 4), "stores [3, 53, 25]"),
    ("no MLP in the config", _set("config", "d_mlp", 0), "blocks.0.mlp.W_in"),
    ("biases in the config", _set("config", "bias", True), "blocks.0.attn.b_Q"),
    ("no positions in the config", _set("config", "positions", "none"), "pos_embed.W_pos"),
    # config fields of the wrong type or out of range
    ("n_layers a string", _set("config", "n_layers", "2"), "n_layers is '2'"),
    ("n_layers a float", _set("config", "n_layers", 2.5), "n_layers is 2.5"),
    ("n_layers a bool", _set("config", "n_layers", True), "n_layers is True"),
    ("n_layers negative", _set("config", "n_layers", -1), "n_layers is -1"),
    ("n_vocab null", _set("config", "n_vocab", None), "n_vocab is None"),
    ("d_head a list", _set("config", "d_head", [25]), "d_head is [25]"),
    ("unknown family", _set("config", "family", "lstm"), "family is 'lstm'"),
    ("causal a string", _set("config", "causal", "yes"), "causal is 'yes'"),
    ("rotary_base negative", _set("config", "rotary_base", -1.0), "rotary_base is -1.0"),
    ("rotary on standard", _set("config", "positions", "rotary"), "rotary positions need"),
    ("config a list", _set("config", [1, 2]), "header config: is a list"),
    ("config field missing", _drop("config", "n_out"), "missing fields ['n_out']"),
    ("config field unknown", _set("config", "n_experts", 8), "unknown fields ['n_experts']"),
    # the header itself
    ("config missing", _drop("config"), "missing keys ['config']"),
    ("unknown header key", _set("extra", 1), "unknown keys ['extra']"),
    ("wrong format", _set("format", "craft-model/9"), "unsupported model format"),
    # the layout
    ("layout an object", _set("layout", {"tok": 1}), "header layout: is a dict"),
    ("layout too short", lambda h: h["layout"].pop(), "names 52 directions"),
    ("layout too long", lambda h: h["layout"].append(["extra", 0]), "names 54 directions"),
    ("layout pair malformed", _set("layout", 3, [1, 2, 3]), "header layout[3]"),
    ("layout value a list", _set("layout", 0, ["tok", [1]]), "header layout[0]"),
    ("layout duplicate", lambda h: h["layout"].__setitem__(1, h["layout"][0]), "appears twice"),
    # the meta
    ("meta a list", _set("meta", [1]), "header meta is a list"),
    ("bounds a list", _set("meta", "bounds", [0.1]), "meta.bounds"),
    ("bound a string", _set("meta", "bounds", "start", "0.1"), "meta.bounds"),
    ("constants of strings", _set("meta", "constants", {"x": "y"}), "meta.constants"),
    ("spec a string", _set("meta", "spec", "skip"), "meta.spec"),
    ("spec sha256 a number", _set("meta", "spec", "sha256", 7), "meta.spec"),
    ("conditions a string", _set("meta", "conditions", "x"), "meta.conditions"),
    ("interference low == high", _set("meta", "interference", [FLAT]), "meta.interference"),
    ("codes malformed", _set("meta", "codes", {"tok:a": [["d", "w"]]}), "meta.codes"),
    ("components an object", _set("meta", "components", {}), "meta.components"),
    ("component kind unknown", _record(kind="lstm"), "meta.components[0]"),
    ("component not an object", _set("meta", "components", 0, 3), "components[0]"),
    ("component in no layer", _record(layer=5), "outside the config's 1 layers"),
    ("component head past n_heads", _record(head=3), "outside the config's 1 layers of 3"),
    ("component reads a list value", _record(reads=[["prev", [1]]]), "meta.components[0]"),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict]:
    """A compiled model's header and tensors."""
    path = tmp_path_factory.mktemp("base") / "skip.safetensors"
    assert main(["compile", SPEC, "-o", str(path)]) == 0
    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["craft"])
    return header, load_file(str(path))


def write(path: Path, tensors: dict, header: Any) -> Path:
    """The model file ``path`` with ``tensors`` and ``header`` (JSON text if a str)."""
    text = header if isinstance(header, str) else json.dumps(header)
    save_file(tensors, str(path), metadata={"craft": text})
    return path


def edited(base: tuple[dict, dict], edit: Edit, path: Path) -> Path:
    header, tensors = copy.deepcopy(base[0]), base[1]
    edit(header)
    return write(path, tensors, header)


def test_the_base_file_loads(base, tmp_path: Path) -> None:
    model = load_model(edited(base, lambda h: None, tmp_path / "ok.safetensors"))
    assert model.cfg.n_layers == 1 and len(model.layout) == model.cfg.d_model == 53


@pytest.mark.parametrize(("edit", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_inspect_and_eval_refuse_a_bad_header(base, tmp_path, capsys, edit, needle) -> None:
    path = edited(base, edit, tmp_path / "bad.safetensors")
    for argv in (["inspect", str(path)], ["eval", str(path), "--spec", SPEC, "--n", "4"]):
        code = main(argv)
        out, err = capsys.readouterr()
        assert_one_error_line(code, err, str(path), needle)
        assert out == ""
    with pytest.raises(CraftError, match=str(path)):  # the header alone, no tensor data
        read_header(path)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[1, 2]", "craft header is a list"),
        ('"model"', "craft header is a str"),
        ("{not json", "corrupt craft header"),
        ("[" * 100_000, "corrupt craft header"),  # nesting past the recursion limit
    ],
)
def test_inspect_refuses_a_header_that_is_no_object(base, tmp_path, capsys, text, needle) -> None:
    path = write(tmp_path / "bad.safetensors", base[1], text)
    code = main(["inspect", str(path)])
    assert_one_error_line(code, capsys.readouterr().err, str(path), needle)


def test_a_mismatch_names_the_tensor_both_shapes_and_the_fix(base, tmp_path) -> None:
    path = edited(base, _set("config", "d_head", 24), tmp_path / "m.safetensors")
    with pytest.raises(CraftError) as e:
        load_model(path)
    message = str(e.value)
    assert message.startswith(f"{path}: tensor blocks.0.attn.W_Q:")
    assert "gives shape [3, 53, 24], the file stores [3, 53, 25]" in message
    assert "fix: the header does not match the tensors: re-export the model" in message


REFUSE_IN_A_SMALL_PROCESS = textwrap.dedent(
    """
    import resource, sys, time
    limit = 600 * 2**20  # far below a billion blocks; the old loader died here in 4 s
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    from craft.models import load_model
    from specs.errors import CraftError
    start = time.perf_counter()
    try:
        load_model(sys.argv[1])
    except CraftError as e:
        print(f"{time.perf_counter() - start:.3f}", e)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_DATA is enforced on Linux")
def test_a_billion_layers_are_refused_before_allocating(base, tmp_path) -> None:
    path = edited(base, _set("config", "n_layers", 10**9), tmp_path / "huge.safetensors")
    assert path.stat().st_size < 100_000
    run = subprocess.run(
        [sys.executable, "-c", REFUSE_IN_A_SMALL_PROCESS, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert run.returncode == 0, run.stderr[-2000:]
    seconds, message = run.stdout.split(" ", 1)
    assert float(seconds) < 1.0
    assert "blocks.1.attn.W_Q" in message and "n_layers=1000000000" in message


def test_every_figure_is_compared_before_a_model_is_built(base, tmp_path, monkeypatch) -> None:
    """No Transformer of the file's config is built (off the meta device) before the check."""
    import craft.models.io as io

    built: list[torch.device] = []
    real = io.Transformer

    def spy(cfg):
        built.append(torch.empty(0).device)  # the default device inside torch.device("meta")
        return real(cfg)

    monkeypatch.setattr(io, "Transformer", spy)
    for field in ("n_layers", "n_heads", "d_model", "d_head", "d_mlp", "n_vocab", "n_out"):
        path = edited(base, _set("config", field, 2**20), tmp_path / f"{field}.safetensors")
        with pytest.raises(CraftError, match="the header does not match the tensors"):
            load_model(path)
    assert all(d.type == "meta" for d in built)
