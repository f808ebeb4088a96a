"""``craft export MODEL --format tlens -o DIR [--spec SPEC]``: the subcommand.

Writes ``DIR/config.json`` (TransformerBridgeConfig keyword arguments),
``DIR/model.safetensors`` (HookedTransformer-format weights) and, when the vocabulary
is known (``--spec``, or a Tracr model's own), ``DIR/tokenizer.json`` and
``DIR/tokenizer_config.json``; see :mod:`craft.export`. It then runs the written
weights through an independent HookedTransformer-format forward pass
(:func:`craft.importers.tlens_reference`) on random tokens and prints the largest
logit difference from craft's own forward. The tensor family has no TransformerLens
counterpart and is refused in one line.

``craft/cli.py`` wires it in with ``add_parser(subparsers)``.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path
from typing import Any

from craft.argtypes import int_at_least
from craft.export import FILES, vocabulary, write_tlens
from craft.importers import check_import, tlens_reference
from craft.models import load_model
from craft.output import print_json
from craft.paths import PathArg, refuse_overwrites
from craft.tlens import hooked_state_dict, refuse_tensor
from specs.load import load_spec

FORMAT = "craft-export/1"
DESCRIPTION = (
    "Write DIR/config.json (TransformerBridgeConfig keyword arguments), DIR/model.safetensors "
    "(HookedTransformer-format weights) and, when the vocabulary is known (--spec, or a Tracr "
    "model's own), DIR/tokenizer.json and DIR/tokenizer_config.json. Then check the written "
    "weights with an independent HookedTransformer-format forward pass against craft's. The "
    "tensor family has no TransformerLens counterpart."
)
EXIT_FAILED = 2
TOLERANCE = 1e-9  # largest |logit difference| / largest |logit|, both in float64


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``export`` on the ``craft`` subparsers; its ``run`` is :func:`run`."""
    p = subparsers.add_parser(
        "export",
        help="write a standard-family model in TransformerLens 4's format",
        description=DESCRIPTION,
    )
    p.add_argument("model", metavar="MODEL", help="model file (.safetensors)")
    p.add_argument(
        "--format", required=True, choices=("tlens",), help="tlens: TransformerLens 4 bridge"
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write")
    p.add_argument(
        "--spec",
        help="spec whose vocabulary names the tokens (writes the tokenizer; Tracr models "
        "carry their own)",
    )
    p.add_argument(
        "--seed", type=int_at_least(0), default=0, help="random tokens of the check (default 0)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)
    return p


def _refuse_overwrites(args: argparse.Namespace) -> None:
    inputs = [PathArg("MODEL", args.model)]
    inputs += [PathArg("--spec", args.spec)] if args.spec else []
    out = Path(args.output)
    outputs = [PathArg("-o", out, "the export")]
    outputs += [PathArg("-o", out / name, "the export") for name in FILES]
    refuse_overwrites(inputs, outputs)


def run(args: argparse.Namespace) -> int:
    """Run ``craft export``; returns 0. Raises CraftError (one line, exit code 2)."""
    _refuse_overwrites(args)
    model = load_model(args.model)
    refuse_tensor(model, args.model)
    spec = load_spec(args.spec) if args.spec else None
    vocab = vocabulary(model, spec)
    written = write_tlens(model, args.output, vocab)
    state = {k: v.double() for k, v in hooked_state_dict(model).items()}
    reference = partial(tlens_reference, state, causal=model.cfg.causal)
    check = check_import(reference, model, model.cfg.n_vocab, model.cfg.n_ctx, seed=args.seed)
    obj = {
        "format": FORMAT,
        "model": args.model,
        "spec": None if spec is None else {"name": spec.name, "sha256": spec.sha256},
        "family": model.cfg.family,
        "params": model.n_params(),
        "to": "tlens",
        "files": [str(p) for p in written],
        "tokenizer": None
        if vocab is None
        else {"tokens": len(vocab.tokens), "bos": vocab.bos, "from": vocab.source},  # fmt: skip
        "check": {
            "max_abs_diff": check.max_abs_diff,
            "relative": check.relative,
            "tokens": check.n_tokens,
            "passed": check.ok(TOLERANCE),
        },  # fmt: skip
    }
    if args.json:
        print_json(obj)
        return 0 if check.ok(TOLERANCE) else EXIT_FAILED
    names = ", ".join(p.name for p in written)
    print(f"{args.model} -> {args.output}/ (TransformerLens 4: {names})")
    if vocab is None:
        print("no tokenizer: pass --spec SPEC to name the tokens")
    print(
        f"check, HookedTransformer-format forward of the written weights vs craft's on "
        f"{check.n_tokens} random tokens (float64): max |logit difference| "
        f"{check.max_abs_diff:.3e}"
    )
    if not check.ok(TOLERANCE):
        print(
            f"craft: error: {args.output}: the written weights' logits differ from the model's "
            f"by {check.relative:.3e} of the largest logit; fix: report this as a bug",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return 0
