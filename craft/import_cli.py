"""``craft import FILE --format tlens|bilinear-toy -o OUT.safetensors``: the subcommand.

Reads a trained model's state dict (safetensors, or a torch file loaded with
``weights_only=True``), converts it into the standard (TransformerLens) or tensor
(bilinear toy model) family, ``tlens`` takes HookedTransformer-format keys
(``blocks.0.attn.W_Q``) or TransformerLens 4 bridge keys (``blocks.0.attn.q.weight``,
with ``--n-heads``), with or without ReLU MLPs, or a folder written by ``craft export
--format tlens`` (its ``config.json`` gives heads, positions and attention direction);
it runs both the converted model and an independent
reference forward pass of the source layout on random tokens, prints the largest
absolute logit difference, and writes the model only when that difference is at most
1e-4 of the largest logit. Exit code 0 on success, 2 on any error or a failed check
(the front door prints ``CraftError`` as one line with exit code 2).

``craft/cli.py`` wires it in with ``add_parser(subparsers).set_defaults(run=run)``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from craft.argtypes import positive_int
from craft.importers import (
    bilinear_reference,
    check_import,
    import_bilinear_toy,
    import_tlens,
    read_state_dict,
    tlens_reference,
)
from craft.models import save_model
from craft.output import print_json
from craft.tlens import bridge_reference, from_bridge, is_bridge_format, read_config
from specs.errors import CraftError

DESCRIPTION = (
    "Convert a trained model's state dict into the standard family (tlens: HookedTransformer "
    "keys such as blocks.0.attn.W_Q, TransformerLens 4 bridge keys such as "
    "blocks.0.attn.q.weight, with or without ReLU MLPs, or a folder written by craft export) "
    "or the tensor family (bilinear-toy), compare its logits with an independent reference "
    "forward pass of the source layout on random tokens, and write it only when they agree "
    "to 1e-4 of the largest logit."
)
EXIT_FAILED = 2
TOLERANCE = 1e-4  # largest |logit difference| / largest |logit|


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``import`` on the ``craft`` subparsers; returns the new parser."""
    p = subparsers.add_parser(
        "import",
        help="convert a TransformerLens or bilinear toy model and check its logits",
        description=DESCRIPTION,
    )
    p.add_argument(
        "file",
        help="state dict (.safetensors, or .pt/.pth/.bin, weights only), or a folder "
        "written by craft export --format tlens",
    )
    p.add_argument(
        "--format",
        required=True,
        choices=("tlens", "bilinear-toy"),
        help="tlens: TransformerLens (HookedTransformer or bridge keys); bilinear-toy: the "
        "published bilinear toy model",
    )
    p.add_argument(
        "--n-heads",
        type=positive_int,
        help="heads per layer (required for bilinear-toy and TransformerLens 4 bridge keys "
        "outside an export folder)",
    )
    p.add_argument(
        "--n-ctx", type=positive_int, help="positions (default: W_pos rows / config.json, or 512)"
    )
    p.add_argument(
        "--bidirectional",
        action="store_true",
        help="tlens: attention_dir was bidirectional (default: causal, or the export's config)",
    )
    p.add_argument("--no-rotary", action="store_true", help="bilinear-toy: no rotary positions")
    p.add_argument(
        "--seed", type=int, default=0, help="random tokens for the logit check (default 0)"
    )
    p.add_argument("-o", "--output", required=True, help="write the model here (.safetensors)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


@contextlib.contextmanager
def _in_file(path: str) -> Iterator[None]:
    """Prefix the file to an importer's error, which names only the tensor."""
    try:
        yield
    except CraftError as e:
        raise CraftError(str(e), where=path) from None


def _tlens_source(args: argparse.Namespace) -> tuple[Path, dict, dict]:
    """The weights file, its tensors, and what an export folder's ``config.json`` says."""
    path = Path(args.file)
    if not path.is_dir():
        return path, read_state_dict(path), {}
    where = str(path / "config.json")
    try:
        obj = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CraftError(
            f"cannot read the config ({type(e).__name__}: {str(e)[:120]})",
            where=where,
            fix="pass a folder written by `craft export --format tlens`, or the weights file",
        ) from None
    conf = read_config(obj, where)
    if args.bidirectional and conf["causal"]:
        raise CraftError(
            "--bidirectional given, but the config says attention_dir 'causal'", where=where
        )
    weights = path / "model.safetensors"
    return weights, read_state_dict(weights), conf


def _convert_tlens(args: argparse.Namespace) -> tuple[Path, Any, Any]:
    """A HookedTransformer-format or TransformerLens 4 bridge state dict (a file, or an
    export folder with ``config.json``): the model and the source's reference forward."""
    weights, sd, conf = _tlens_source(args)
    causal = conf.get("causal", not args.bidirectional)
    n_heads, n_ctx = args.n_heads or conf.get("n_heads"), args.n_ctx or conf.get("n_ctx")
    if not is_bridge_format(sd):
        with _in_file(str(weights)):
            model = import_tlens(sd, n_ctx=n_ctx, causal=causal)
        return weights, model, partial(tlens_reference, sd, causal=causal)
    if n_heads is None:
        raise CraftError(
            "a TransformerLens 4 bridge state dict stores the heads side by side",
            where="--n-heads",
            fix="pass it, or the export folder (its config.json names n_heads)",
        )
    with _in_file(str(weights)):
        model = import_tlens(from_bridge(sd, n_heads), n_ctx=n_ctx, causal=causal)
    return weights, model, partial(bridge_reference, sd, n_heads=n_heads, causal=causal)


def _convert(args: argparse.Namespace) -> tuple[Path, Any, Any]:
    """The weights file read, the imported model and the source layout's reference
    ``tokens -> logits``."""
    if args.format == "tlens":
        return _convert_tlens(args)
    if args.n_heads is None:
        raise CraftError(
            "the bilinear toy layout stores heads side by side", where="--n-heads", fix="pass it"
        )
    sd = read_state_dict(args.file)
    rotary = not args.no_rotary
    with _in_file(args.file):
        model = import_bilinear_toy(
            sd, n_heads=args.n_heads, n_ctx=args.n_ctx or 512, rotary=rotary
        )
    ref = partial(bilinear_reference, sd, n_heads=args.n_heads, rotary=rotary)
    return Path(args.file), model, ref


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run(args: argparse.Namespace) -> int:
    """Run ``craft import``; returns the exit code (0 written, 2 check failed)."""
    weights, model, reference = _convert(args)
    cfg = model.cfg
    check = check_import(reference, model, cfg.n_vocab, cfg.n_ctx, seed=args.seed)
    passed = check.ok(TOLERANCE)
    obj = {
        "format": "craft-import/1",
        "source": args.file,
        "from": args.format,
        "family": cfg.family,
        "config": cfg.to_json(),
        "params": model.n_params(),
        "check": {
            "max_abs_diff": check.max_abs_diff,
            "max_abs_logit": check.max_abs_logit,
            "relative": check.relative,
            "tolerance": TOLERANCE,
            "tokens": check.n_tokens,
            "passed": passed,
        },
        "output": args.output if passed else None,
    }
    if passed:
        source = {"source": Path(args.file).name, "format": args.format}
        digest = _sha256(str(weights))
        model.meta = {"imported": source | {"sha256": digest, "check": obj["check"]}}
        save_model(model.float(), args.output)
    if args.json:
        print_json(obj)
    else:
        print(
            f"{args.file}: {args.format} -> {cfg.family} family, {cfg.n_layers} layers x "
            f"{cfg.n_heads} heads (d_model {cfg.d_model}, d_head {cfg.d_head}, d_mlp "
            f"{cfg.d_mlp}), vocabulary {cfg.n_vocab} -> {cfg.n_out}, {obj['params']} parameters"
        )
        print(
            f"logit check on {check.n_tokens} random tokens: max |difference| "
            f"{check.max_abs_diff:.3e} (relative {check.relative:.3e}, tolerance {TOLERANCE:g})"
        )
        if passed:
            print(f"wrote {args.output}")
    if not passed:
        print(
            f"craft: error: {args.file}: imported logits differ from the source's by "
            f"{check.relative:.3e} of the largest logit; nothing written; fix: check --format, "
            "--n-heads and --bidirectional",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return 0
