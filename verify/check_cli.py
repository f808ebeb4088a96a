"""``craft check MODEL --spec SPEC [--claims FILE | --like CRAFTED]``: the subcommand.

Property-tests claims about a model against the spec's ground truth
(:func:`verify.check.check_all`): a claims file, or the default claims of the model's
own circuit (:mod:`verify.defaults`), or with ``--like`` those of a crafted model moved
onto the heads of this one matched to its components. Prints a table (what each claim
compares, distinct contexts, the counterexample) and a coverage line per claim, or with
``--json`` one ``craft-check/1`` object. Exit code 1 when a claim fails; user errors
raise CraftError (one line, exit 2, from ``craft.cli.main``).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from craft.argtypes import fraction, int_at_least, positive_float
from craft.models import component_records, load_model
from craft.output import emit, new_console, warn, warn_other_spec
from craft.report import check_table
from specs.errors import CraftError
from specs.load import load_spec
from verify.behaviour import check_finite, check_fit
from verify.check import check_all
from verify.claims import check_model, load_claims
from verify.defaults import default_claims, for_trained, retarget
from verify.replay import replay_dir


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``check`` on the ``craft`` subparsers; returns the new parser."""
    p = subparsers.add_parser("check", help="property-test claims about a model (Hypothesis)")
    p.add_argument("model", metavar="MODEL", help="model file (.safetensors)")
    p.add_argument("--spec", required=True, help="spec file giving the ground truth")
    p.add_argument("--claims", help="claims file (YAML); default: the model's own circuit")
    p.add_argument(
        "--like",
        metavar="CRAFTED",
        help="check the default claims of this crafted model (e.g. against a trained one); "
        "head claims move to the heads matched to its components (verify.matching)",
    )
    p.add_argument(
        "--tolerance",
        type=positive_float,
        help="default claims: a rule holds when its excess loss is at most this (nats)",
    )
    p.add_argument(
        "--fraction",
        type=fraction,
        help="default claims: statistical, holding on at least this fraction (0 < p <= 1)",
    )
    p.add_argument("--examples", type=int_at_least(1), default=200, help="contexts per claim")
    p.add_argument(
        "--sweep",
        type=int_at_least(0),
        help="contexts drawn in bulk after Hypothesis (default: 4 x --examples; 0: none)",
    )
    p.add_argument("--seed", type=int_at_least(0), default=0, help="search seed")
    p.add_argument(
        "--replay-dir",
        help="replay store (default: $CRAFT_CACHE_DIR/replay, else $XDG_CACHE_HOME/craft/replay, "
        "else ~/.cache/craft/replay)",
    )
    p.add_argument("--no-replay", action="store_true", help="no replay store")
    p.add_argument(
        "--keep-thresholds",
        action="store_true",
        help="with --like: keep the crafted head-role scores (default: lowered to 0.3, "
        "printed with each claim)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead")
    p.set_defaults(run=run)
    return p


def _circuit_fits(crafted, spec, where: str) -> None:
    """The crafted model's components and bounds name only rules of ``spec`` (its default
    claims are about those rules)."""
    named = {r for rec in component_records(crafted) for r in rec.rules}
    missing = sorted((named | set(crafted.meta.get("bounds") or {})) - set(spec.rule_names()))
    if missing:
        source = (crafted.meta.get("spec") or {}).get("source") or "its own spec"
        raise CraftError(
            f"the model's circuit serves rules spec {spec.name!r} lacks ({', '.join(missing)})",
            where=where,
            fix=f"check it against the spec it was compiled from ({source}), or pass --claims",
        )


def _claims(args: argparse.Namespace, model, spec) -> tuple:
    """The claims file's claims, or the default claims of the model (or of ``--like``)."""
    if args.claims:
        return load_claims(args.claims)
    crafted = model
    if args.like:  # head claims move to the heads matched to the crafted components
        crafted = load_model(args.like)
        check_fit(crafted, spec, where=args.like)
        for path, m in ((args.like, crafted), (args.model, model)):
            check_finite(m, where=path)  # matching heads needs finite weights
    _circuit_fits(crafted, spec, args.like or args.model)
    claims = default_claims(crafted, spec)
    if args.like:
        claims = retarget(
            claims, crafted, model, spec, seed=args.seed, keep_thresholds=args.keep_thresholds
        )
    if args.tolerance is not None or args.fraction is not None:
        claims = for_trained(claims, args.tolerance or 0.0, args.fraction)
    return claims


def run(args: argparse.Namespace) -> int:
    """``craft check MODEL --spec SPEC [--claims FILE]``: property-test claims."""
    model = load_model(args.model)
    spec = load_spec(args.spec)
    check_model(model, spec, where=args.model)
    warn_other_spec(model, spec, args.model, args.spec, "checking")
    claims = _claims(args, model, spec)
    if not claims:
        raise CraftError(
            "no claims to check",
            where=args.model,
            fix="pass --claims FILE (the model has no crafted components to derive claims from)",
        )
    database = None if args.no_replay else (args.replay_dir or str(replay_dir()))
    results = check_all(
        model,
        spec,
        claims,
        examples=args.examples,
        seed_=args.seed,
        database=database,
        sweep=args.sweep,
    )
    for r in results:
        for w in r.warnings:
            warn(w)
    diverged = [r.name for r in results if not math.isfinite(r.value) and not r.passed]
    if diverged:
        warn(
            f"{args.model}: the model's outputs are NaN or inf (it diverged, or its weights "
            f"are corrupt); {len(diverged)} claims fail with a non-finite value"
        )
    if args.json:
        emit("check", {"claims": [r.to_json() for r in results]}, model=args.model, spec=spec)
    else:
        console = new_console()
        console.print(check_table(results))
        for r in results:  # per claim: coverage; a failure's effect; a loosened bound
            console.print(r.name, soft_wrap=True)
            for line in r.lines()[1:]:
                console.print(line, soft_wrap=True)
        failed = [r for r in results if not r.passed]
        console.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if any(not r.passed for r in results) else 0
