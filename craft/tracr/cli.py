"""``craft tracr PROGRAM --vocab a,b,c --max-len 5 -o prog.safetensors``: the subcommand.

Compiles a RASP program with the fast path, checks it against ``rasp.evaluate`` and
writes the model (``--family tensor``: a bilinear model, for programs in the fragment
of :mod:`craft.tracr.tensor`; others are refused naming the operation). Prints the
layout and the check result, or with ``--json`` one object
``{"agreement", "checked", "exhaustive", "failures", "compile_seconds", "layers",
"d_model", "params", ...}``. Exit code 0 when the model agrees on every checked input,
1 when it does not (the report says why and how to fix it); user errors raise
``CraftError`` (the ``craft`` front door prints one line and exits 2).

``craft/cli.py`` wires it in with ``add_parser(subparsers, check=..., replay_dir=...)``
and dispatches to ``run``. ``check`` is the agreement check: the front door passes
``verify.tracr_check.check``, the Hypothesis search ``craft check`` uses, with its replay
database (``--no-replay`` turns it off); ``craft`` itself may not import ``verify``, so
without one, only input spaces small enough to check exhaustively are accepted.
Tracr is imported only when the subcommand runs.
"""

from __future__ import annotations

import argparse
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from craft.argtypes import float_in, positive_int
from craft.memory import require
from craft.output import print_json
from craft.tracr.pipeline import MAX_MLP_EXACTNESS
from specs.errors import CraftError

EXIT_DISAGREE = 1


def add_parser(
    subparsers: Any, check: Callable | None = None, replay_dir: str | None = None
) -> argparse.ArgumentParser:
    """Register ``tracr`` on the ``craft`` subparsers; returns the new parser.

    Args:
        subparsers: the ``craft`` subparsers.
        check: the agreement check, called like :func:`craft.tracr.agreement.check` plus
            ``database=``; None: that exhaustive-only check.
        replay_dir: the replay database directory passed to ``check``.
    """
    p = subparsers.add_parser(
        "tracr",
        help="compile a RASP program (Tracr) into a PyTorch model and check it",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("program", help="FILE.py:NAME, module:NAME or lib:NAME (Tracr's library)")
    p.add_argument("--vocab", help="input tokens, comma-separated (a,b,c or 1,2,3)")
    p.add_argument(
        "--max-len", type=positive_int, required=True, help="longest input, BOS excluded"
    )
    p.add_argument("-o", "--output", help="write the model here (.safetensors)")
    p.add_argument(
        "--family",
        choices=("standard", "tensor"),
        default="standard",
        help="tensor: a bilinear model, for programs in its fragment",
    )
    p.add_argument(
        "--mlp-exactness",
        type=float_in(0, MAX_MLP_EXACTNESS),
        default=100.0,
        help="Tracr's numerical MLP sharpness (raise it when long inputs fail; "
        f"at most {MAX_MLP_EXACTNESS:g}, float32's limit)",
    )
    p.add_argument(
        "--write-failing",
        action="store_true",
        help="write -o even when the model disagrees with the program (to study it)",
    )
    p.add_argument("--compiler-bos", default="BOS", help="the BOS token (default BOS)")
    p.add_argument(
        "--samples",
        type=positive_int,
        default=2000,
        help="Hypothesis inputs when there are over 100,000 inputs",
    )
    p.add_argument("--seed", type=int, default=0, help="Hypothesis seed")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    if check is not None:
        p.add_argument("--no-replay", action="store_true", help=f"do not use {replay_dir}")
    p.set_defaults(check=check, replay_dir=replay_dir)
    return p


def _checker(args: argparse.Namespace) -> Callable:
    """The agreement check to run: the injected one bound to its replay database, else
    craft's own (exhaustive only)."""
    from craft.tracr.agreement import check

    injected = getattr(args, "check", None)
    if injected is None:
        return check
    replay = None if getattr(args, "no_replay", False) else getattr(args, "replay_dir", None)
    return functools.partial(injected, database=replay)


def _compile(args: argparse.Namespace, program: Any, vocab: set) -> tuple[Any, Any]:
    check = _checker(args)
    if args.family == "tensor":
        from craft.tracr.fast import from_rasp

        model = from_rasp(
            program, vocab, args.max_len, compiler_bos=args.compiler_bos, family="tensor"
        )
        return model, check(model, program, vocab, samples=args.samples, seed=args.seed)
    from craft.tracr.pipeline import compile_checked

    return compile_checked(
        program,
        vocab,
        args.max_len,
        mlp_exactness=args.mlp_exactness,
        compiler_bos=args.compiler_bos,
        samples=args.samples,
        seed=args.seed,
        check=check,
    )


def _require_memory(args: argparse.Namespace, vocab: set, given: set | None) -> None:
    """Refuse a compile whose estimated footprint (pilot compiles at shorter lengths,
    :mod:`craft.tracr.footprint`) exceeds the memory limit."""
    from craft.tracr.fast import from_rasp
    from craft.tracr.footprint import estimate
    from craft.tracr.program import load_program

    def compile_at(length: int) -> Any:
        program, _ = load_program(args.program, max_len=length, vocab=given)
        options = (
            {"family": "tensor"}
            if args.family == "tensor"
            else {"mlp_exactness": args.mlp_exactness}
        )
        return from_rasp(program, vocab, length, compiler_bos=args.compiler_bos, **options)

    found = estimate(compile_at, args.max_len)
    if found is not None:
        doing = f"compiling {args.program} at --max-len {args.max_len} (Tracr; estimated from "
        doing += f"pilots at {found.pilots[-2].max_len} and {found.pilots[-1].max_len})"
        require(doing, found.bytes, "pass a smaller --max-len")


def report(model: Any, result: Any, seconds: float) -> dict:
    """The ``--json`` object."""
    cfg = model.model.cfg
    return {
        **result.to_json(),
        "compile_seconds": seconds,
        "layers": cfg.n_layers,
        "d_model": cfg.d_model,
        "params": model.model.n_params(),
        "family": cfg.family,
        "output_encoding": "categorical" if model.categorical else "numerical",
        "removed_noop_sublayers": model.report.get("removed_noop_sublayers", []),
        "zero_filled_slots": model.report.get("zero_filled_slots", []),
        "pruned_directions": model.report.get("pruned_directions", []),
    }


def _print_text(spec: str, model: Any, result: Any, obj: dict, output: str | None) -> None:
    cfg = model.model.cfg
    print(
        f"{spec}: {cfg.family} model, {cfg.n_layers} layers, d_model {cfg.d_model}, "
        f"{cfg.n_heads} heads x d_head {cfg.d_head}, d_mlp {cfg.d_mlp}, "
        f"{obj['params']} parameters, compiled in {obj['compile_seconds']:.3f} s"
    )
    print(
        "layout: "
        + ", ".join(f"{n} x{k}" if k > 1 else n for n, k in model.model.layout.describe())
    )
    if model.report.get("pruned_directions"):
        print("pruned (nothing reads them): " + ", ".join(model.report["pruned_directions"]))
    print(f"output: {obj['output_encoding']} on {', '.join(model.model.meta['output_space'])}")
    if obj["removed_noop_sublayers"] or obj["zero_filled_slots"]:
        print(
            f"no-op sublayers removed: {obj['removed_noop_sublayers'] or 'none'}; "
            f"zero-filled slots (every block has attention and MLP): "
            f"{obj['zero_filled_slots'] or 'none'}"
        )
    print("check: " + result.summary())
    if output:
        print(f"wrote {output}")


def run(args: argparse.Namespace) -> int:
    """Run ``craft tracr``; returns the exit code (0 agree, 1 disagree)."""
    from craft.tracr.program import UserFault, load_program, parse_vocab, raised

    logging.basicConfig(format="craft: warning: %(message)s")  # Tracr warns through logging
    given = parse_vocab(args.vocab) if args.vocab is not None else None
    start = time.perf_counter()
    program, lib_vocab = load_program(args.program, max_len=args.max_len, vocab=given)
    vocab = given if given is not None else lib_vocab
    if vocab is None:
        raise CraftError("no vocabulary", where=args.program, fix="pass --vocab a,b,c")
    _require_memory(args, vocab, given)
    try:
        model, result = _compile(args, program, vocab)
    except UserFault as e:  # Tracr runs the program's functions over the value sets
        fix = "make the program's functions total on the vocabulary, or see python's error"
        raise raised(e, "compiling with Tracr", args.program, fix) from None
    seconds = model.report.get("compile_seconds", time.perf_counter() - start)
    output = args.output if result.passed or args.write_failing else None
    if output:
        model.save(output)
    head = {"format": "craft-tracr/1", "program": args.program, "model": output}
    obj = head | report(model, result, seconds)
    if args.json:
        print_json(obj)
    else:
        _print_text(args.program, model, result, obj, output)
        if args.output and not output:
            print(
                f"not written to {args.output}: the model disagrees with the program "
                "(--write-failing writes it anyway)"
            )
    return 0 if result.passed else EXIT_DISAGREE
