"""Model files: safetensors tensors plus a JSON header in the safetensors metadata.

The header holds ``config`` (ModelConfig), ``layout`` (named residual directions, or
null) and ``meta`` (provenance: spec name and hash, compiler version, constants,
bounds). Loading never executes code from the file; writing is atomic (a temporary
file in the same folder, then ``os.replace``), so a failed write leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from craft.models.config import ModelConfig
from craft.models.layout import Layout
from craft.models.transformer import Transformer
from specs.errors import CraftError

FORMAT = "craft-model/1"


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(tmp_path)`` then move the result onto ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(model: Transformer, path: str | Path) -> None:
    """Write ``model`` atomically; an unwritable path is a CraftError naming it."""
    header = {
        "format": FORMAT,
        "config": model.cfg.to_json(),
        "layout": model.layout.to_json() if model.layout is not None else None,
        "meta": model.meta,
    }
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    try:
        atomic_write(
            path, lambda tmp: save_file(tensors, tmp, metadata={"craft": json.dumps(header)})
        )
    except OSError as e:
        raise CraftError(
            f"cannot write the model file ({e.strerror or e})",
            where=str(path),
            fix="write to a folder that exists (or can be created) and is writable",
        ) from None


def read_header(path: str | Path) -> dict:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CraftError(f"{path}: no such model file", fix="check the path")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CraftError(f"{path}: not a safetensors file ({e})") from None
    if "craft" not in meta:
        raise CraftError(
            f"{path}: safetensors file without a craft header",
            fix="convert it with `craft import` or write it with craft",
        )
    try:
        header = json.loads(meta["craft"])
    except json.JSONDecodeError as e:
        raise CraftError(f"{path}: corrupt craft header ({e})") from None
    if header.get("format") != FORMAT:
        raise CraftError(f"{path}: unsupported model format {header.get('format')!r}")
    return header


def load_model(path: str | Path) -> Transformer:
    header = read_header(path)
    cfg = ModelConfig.from_json(header["config"])
    model = Transformer(cfg)
    try:
        state = load_file(str(path))
        model.load_state_dict(state, strict=True)
    except (RuntimeError, SafetensorError) as e:
        raise CraftError(f"{path}: tensors do not match the config ({str(e)[:200]})") from None
    model.layout = Layout.from_json(header["layout"]) if header.get("layout") else None
    model.meta = header.get("meta") or {}
    return model.eval()
