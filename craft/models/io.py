"""Model files: safetensors tensors plus a JSON header in the safetensors metadata.

The header holds ``config`` (ModelConfig), ``layout`` (named residual directions, or
null) and ``meta`` (provenance: spec name and hash, compiler version, constants,
bounds). Loading never executes code from the file; writing is atomic (a temporary
file in the same folder, then ``os.replace``), so a failed write leaves nothing behind.

A model file is untrusted input. :func:`load_model` checks the header's every field
(types, ranges, the layout's length, the meta the CLI reads) and then compares the
config with the stored tensor shapes, read from the safetensors index without loading
any data, before it allocates a model: a 78 KB file whose header claims
``n_layers: 1000000000`` is one :class:`CraftError`, not an exhausted memory. Every
error names the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import reprlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from craft.models.components import ComponentRecord
from craft.models.config import ModelConfig
from craft.models.layout import Layout
from craft.models.transformer import Block, Transformer
from specs.errors import CraftError

FORMAT = "craft-model/1"
HEADER_KEYS = ("format", "config", "layout", "meta")
REEXPORT = "re-export the model with craft (compile, import or train)"
MISMATCH = f"the header does not match the tensors: {REEXPORT}"

Shapes = dict[str, tuple[int, ...]]  # tensor name -> shape, as the file stores it


def _umask() -> int:
    """The process umask (read by setting and restoring it: Python has no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], object], what: str = "the file") -> None:
    """Call ``write(tmp_path)`` then move the result onto ``path`` in one step.

    The temporary file sits beside ``path`` (one file system, so ``os.replace`` is
    atomic) and is removed whatever stops the write: an error, a full disk, Ctrl-C, or
    SIGTERM (which ``craft.cli.main`` turns into KeyboardInterrupt). The result gets
    the mode a plain ``open()`` gives (0666 less the umask), not mkstemp's 0600.

    Raises:
        CraftError: naming ``path`` and the OS's reason when the folder cannot be made
            or the write fails: an OSError, or safetensors' SafetensorError, which wraps
            the OS error of a full disk or a file-size limit.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise _write_error(path, what, e.strerror or str(e)) from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except (OSError, SafetensorError) as e:
        raise _write_error(path, what, getattr(e, "strerror", None) or str(e)) from None
    finally:
        Path(tmp).unlink(missing_ok=True)  # gone after os.replace; left only on a failure


def _write_error(path: Path, what: str, reason: str) -> CraftError:
    return CraftError(
        f"cannot write {what} ({reason}); nothing was written",
        where=str(path),
        fix="write to a writable folder with free space (or free some)",
    )


def save_model(model: Transformer, path: str | Path) -> None:
    """Write ``model`` atomically; an unwritable path is a CraftError naming it."""
    header = {
        "format": FORMAT,
        "config": model.cfg.to_json(),
        "layout": model.layout.to_json() if model.layout is not None else None,
        "meta": model.meta,
    }
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"craft": json.dumps(header)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata), "the model file")


@dataclass(frozen=True)
class Header:
    """A checked model-file header.

    Attributes:
        config: the model's shape and behaviour.
        layout: one named direction per residual dimension, or None.
        meta: provenance as the file stores it (its component records and the fields
            the CLI prints are checked; other keys pass through untouched).
        raw: the header's JSON object.
    """

    config: ModelConfig
    layout: Layout | None
    meta: dict[str, Any]
    raw: dict[str, Any]


@contextlib.contextmanager
def _named(path: str, where: str) -> Iterator[None]:
    """Give a CraftError raised inside that does not name the file ``path`` the place ``where``."""
    try:
        yield
    except CraftError as e:
        if str(e).startswith(path):
            raise
        raise CraftError(str(e), where=where) from None


def _open(path: Path) -> tuple[dict[str, str], Shapes]:
    """The safetensors metadata and every tensor's shape; no tensor data is read."""
    if not path.is_file():
        raise CraftError("no such model file", where=str(path), fix="check the path")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            # the shapes from the file's index: no tensor data is read (safe_open is no dict)
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as e:
        raise CraftError(
            f"not a safetensors file ({str(e)[:160]})",
            where=str(path),
            fix="pass a model file written by craft",
        ) from None
    return meta, shapes


def _header(path: Path) -> Header:
    """The checked header of the model file ``path``: fields, then stored shapes, then the rest.

    The config is compared with the stored shapes before the layout and meta, so a
    header whose sizes are off is named by the tensor that shows it.
    """
    metadata, stored = _open(path)
    where = str(path)
    raw = _raw(metadata, where)
    cfg = ModelConfig.from_json(raw["config"], where=f"{where}: header config")
    _check_shapes(cfg, stored, where)
    layout = _layout(raw.get("layout"), cfg, where)
    return Header(cfg, layout, _meta(raw.get("meta"), cfg, where), raw)


def _raw(metadata: dict[str, str], where: str) -> dict[str, Any]:
    """The craft header's JSON object: the right format and only the known keys."""
    if "craft" not in metadata:
        raise CraftError(
            "safetensors file without a craft header",
            where=where,
            fix="convert it with `craft import` or write it with craft",
        )
    try:
        raw = json.loads(metadata["craft"])
    except (json.JSONDecodeError, RecursionError) as e:
        message = f"corrupt craft header ({str(e)[:120]})"
        raise CraftError(message, where=where, fix=REEXPORT) from None
    if not isinstance(raw, dict):
        raise CraftError(f"craft header is a {type(raw).__name__}", where=where, fix=REEXPORT)
    if raw.get("format") != FORMAT:
        raise CraftError(
            f"unsupported model format {reprlib.repr(raw.get('format'))}",
            where=where,
            fix=f"this craft reads {FORMAT}; {REEXPORT}",
        )
    unknown = sorted(map(str, set(raw) - set(HEADER_KEYS)))
    if unknown or "config" not in raw:
        wrong = [f"unknown keys {unknown}"] * bool(unknown)
        wrong += [] if "config" in raw else ["missing keys ['config']"]
        raise CraftError(
            f"craft header with {' and '.join(wrong)}",
            where=where,
            fix=f"a header has the keys {', '.join(HEADER_KEYS)}; {REEXPORT}",
        )
    return raw


def _layout(obj: Any, cfg: ModelConfig, where: str) -> Layout | None:
    """The header's layout (null: none), one direction per residual dimension."""
    if obj is None:
        return None
    layout = Layout.from_json(obj, where=f"{where}: header layout")
    if len(layout) != cfg.d_model:
        raise CraftError(
            f"header layout names {len(layout)} directions, but config.d_model is {cfg.d_model}",
            where=where,
            fix=f"a layout names one direction per residual dimension; {REEXPORT}",
        )
    return layout


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _strings(x: Any) -> bool:
    return isinstance(x, list) and all(isinstance(v, str) for v in x)


def _interference(x: Any) -> bool:
    """One ``Interference.to_json()``: names, rules, and two different readings."""
    keys = ("head", "reads", "member", "other")
    return (
        isinstance(x, dict)
        and all(isinstance(x.get(k), str) for k in keys)
        and _strings(x.get("rules", []))
        and _number(x.get("low"))
        and _number(x.get("high"))
        and x["low"] != x["high"]  # the CLI prints the margin 1 / (low - high)
    )


def _code(x: Any) -> bool:
    """One feature code: ``[[dimension name, weight], ...]``."""
    return isinstance(x, list) and all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and _number(p[1]) for p in x
    )


# meta keys the CLI and verify read, each with its check and the form it must have;
# other keys (training, imported, Tracr encodings) pass through untouched
META_FIELDS = {
    "spec": (
        lambda v: (
            isinstance(v, dict)
            and all(isinstance(v.get(k, ""), str) for k in ("name", "sha256", "source"))
        ),
        "an object with string name, sha256 and source",
    ),
    "compiler": (lambda v: isinstance(v, dict), "an object"),
    "constants": (
        lambda v: isinstance(v, dict) and all(map(_number, v.values())),
        "an object of numbers",
    ),
    "bounds": (
        lambda v: isinstance(v, dict) and all(map(_number, v.values())),
        "an object of numbers, one per rule",
    ),
    "conditions": (_strings, "a list of strings"),
    "products": (_strings, "a list of strings"),
    "bound_scope": (lambda v: isinstance(v, str), "a string"),
    "interference": (
        lambda v: isinstance(v, list) and all(map(_interference, v)),
        "a list of objects with head, reads, member, other, rules, and low != high",
    ),
    "codes": (
        lambda v: isinstance(v, dict) and all(map(_code, v.values())),
        "an object of [[dimension, weight], ...] lists",
    ),
    "components": (lambda v: isinstance(v, list), "a list of component records"),
}


def _meta(obj: Any, cfg: ModelConfig, where: str) -> dict[str, Any]:
    """The header's meta (null or absent: empty), with the fields the CLI reads checked."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        message = f"header meta is a {type(obj).__name__}, not an object"
        raise CraftError(message, where=where, fix=REEXPORT)
    for key, (ok, form) in META_FIELDS.items():
        if key in obj and not ok(obj[key]):
            raise CraftError(
                f"header meta.{key} is {reprlib.repr(obj[key])}",
                where=where,
                fix=f"meta.{key} must be {form}; {REEXPORT}",
            )
    for i, item in enumerate(obj.get("components", [])):
        place = f"{where}: header meta.components[{i}]"
        with _named(where, place):
            record = ComponentRecord.from_json(item, where=place)
        heads = cfg.n_heads if record.sublayer == "attn" else 1
        if record.layer >= cfg.n_layers or (record.head or 0) >= heads:
            raise CraftError(
                f"component {record.name!r} sits in layer {record.layer}, head {record.head},"
                f" outside the config's {cfg.n_layers} layers of {cfg.n_heads} heads",
                where=place,
                fix=REEXPORT,
            )
    return obj


def read_header(path: str | Path) -> dict[str, Any]:
    """The header of a model file as JSON, every field checked, no tensor data read.

    Raises:
        CraftError: naming the file: not a safetensors file, no or a corrupt craft
            header, a field of the wrong type or out of range, or a config that does not
            match the stored tensor shapes.
    """
    return _header(Path(path)).raw


def _expected_shapes(cfg: ModelConfig, where: str) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Every state-dict name and shape a model of ``cfg`` has, lazily, in file order.

    The shapes come from the model classes themselves, built on the ``meta`` device (no
    memory): the top level once without blocks, one block, then its names per layer. A
    generator, so a header claiming a billion layers costs only as many steps as the
    file has tensors before the first missing one.

    Raises:
        CraftError: sizes whose products overflow a tensor's element count.
    """
    try:
        with torch.device("meta"):
            top = Transformer(replace(cfg, n_layers=0)).state_dict()
            block = Block(cfg).state_dict() if cfg.n_layers else {}
    except RuntimeError as e:  # "Storage size calculation overflowed"
        raise CraftError(
            f"the header's config ({_figures(cfg)}) gives tensors too large to store ({e})",
            where=where,
            fix=MISMATCH,
        ) from None
    head = [k for k in top if not k.startswith("unembed.")]
    yield from ((k, tuple(top[k].shape)) for k in head)
    for i in range(cfg.n_layers):
        yield from ((f"blocks.{i}.{k}", tuple(v.shape)) for k, v in block.items())
    yield from ((k, tuple(v.shape)) for k, v in top.items() if k not in head)


def _figures(cfg: ModelConfig) -> str:
    """The config's sizes, for errors: ``n_layers=2, n_heads=4, ...``."""
    sizes = ("n_layers", "n_heads", "d_model", "d_head", "d_mlp", "n_vocab", "n_out", "n_ctx")
    return ", ".join(f"{k}={getattr(cfg, k)}" for k in sizes) + (
        f", positions={cfg.positions}, bias={str(cfg.bias).lower()}"
    )


def _check_shapes(cfg: ModelConfig, stored: Shapes, where: str) -> None:
    """The tensors the header's config implies are exactly the ones stored, shape for shape."""
    seen = set()
    for name, shape in _expected_shapes(cfg, where):
        found = stored.get(name)
        if found != shape:
            has = f"stores {list(found)}" if found is not None else "has no such tensor"
            raise CraftError(
                f"tensor {name}: the header's config ({_figures(cfg)}) gives shape"
                f" {list(shape)}, the file {has}",
                where=where,
                fix=MISMATCH,
            )
        seen.add(name)
    extra = sorted(set(stored) - seen)
    if extra:
        raise CraftError(
            f"tensors {extra[:3]}{' ...' if len(extra) > 3 else ''} are stored, but the"
            f" header's config ({_figures(cfg)}) has no such tensors",
            where=where,
            fix=MISMATCH,
        )


def load_model(path: str | Path) -> Transformer:
    """Read a model file; nothing is allocated before the header matches the tensors.

    Raises:
        CraftError: naming the file: unreadable, a malformed header, or a header whose
            config does not match the stored tensors (named with both shapes).
    """
    path = Path(path)
    header = _header(path)
    model = Transformer(header.config)
    try:
        tensors = load_file(str(path))
        if any(t.dtype == torch.float64 for t in tensors.values()):
            model = model.double()  # a model that must run in float64 (meta["dtype"])
        model.load_state_dict(tensors, strict=True)
    except (RuntimeError, SafetensorError) as e:  # the shapes were checked: a damaged file
        message = f"cannot read the tensors ({str(e)[:200]})"
        raise CraftError(message, where=str(path), fix=REEXPORT) from None
    model.layout = header.layout
    model.meta = header.meta
    return model.eval()
