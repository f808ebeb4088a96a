"""Does a model trained without positional embeddings re-derive position the crafted way?

The task is ``specs/library/previous_token.yaml``: random symbols, and after the
cue ``?`` the next token is the one just before the cue (a copy rule, offset 1): the
"predict the previous token" task in next-token form, which needs position.

1. **Crafted.** ``compile_spec`` builds the copy head on learned positions;
   :func:`craft.compiler.positions.derive_positions` removes the table and prepends a
   layer that re-derives it (a uniform head gives BOS the share ``1/(t+1)``, an MLP
   interpolates the position code). Its KL from the spec is checked per rule.
2. **Trained.** ``craft.train`` trains a 2-layer model with ``positions="none"`` on
   the spec's own data (CPU by default: ``--steps``).
3. **Compared.** :func:`verify.diff.diff` gives behaviour per rule for both, and
   :func:`verify.positions.position_report` says, for each model, in which layer a
   linear probe first reads position from the residual stream, which heads' writes
   carry it (and whether they attend uniformly), and where the previous-token heads
   sit; :func:`verify.positions.compare` says whether training re-derived position the
   same way.

Run ``python examples/position_free.py`` (``--steps 3000`` for a longer run; about two
minutes a thousand steps on two CPU cores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from craft.compiler import compile_spec  # noqa: E402
from craft.compiler.positions import derive_positions  # noqa: E402
from craft.train import TrainConfig, train  # noqa: E402
from specs.load import library_path, load_spec  # noqa: E402
from verify.diff import diff  # noqa: E402
from verify.positions import compare, position_report  # noqa: E402

SPEC = library_path("previous_token")


def trained_model(spec, steps: int, seed: int):
    """A 2-layer, 4-head, d_model 64 standard model with no positional embedding."""
    config = TrainConfig(
        n_layers=2, n_heads=4, d_model=64, d_mlp=256, positions="none", steps=steps,
        batch=64, lr=3e-3, device="cpu", seed=seed, eval_batch=64,
    )  # fmt: skip
    return train(spec, config).model


def main(steps: int = 1000, n_seqs: int = 200, seed: int = 0) -> dict:
    """Compile, train, compare; print the tables and return the figures."""
    spec = load_spec(SPEC)
    crafted = derive_positions(compile_spec(spec, "standard").model)
    trained = trained_model(spec, steps, seed)
    d = diff(crafted, trained, spec, n_seqs=n_seqs, seed=seed)
    cue = next(r for r in spec.rules if hasattr(r, "offset")).cue
    reports = {
        m: position_report(x, queries=cue) for m, x in (("crafted", crafted), ("trained", trained))
    }
    verdict = compare(reports["crafted"], reports["trained"])
    console = Console(width=120)
    table = Table(title=f"behaviour per rule ({n_seqs} sampled sequences): excess loss, nats")
    for col in ("rule", "crafted KL", "trained KL", "trained accuracy"):
        table.add_column(col, justify="left" if col == "rule" else "right")
    for rule, stats in d.trained.rules.items():
        crafted_kl = d.crafted.rules[rule].kl if rule in d.crafted.rules else float("nan")
        table.add_row(rule, f"{crafted_kl:.2e}", f"{stats.kl:.3g}", f"{stats.accuracy:.3f}")
    console.print(table)
    for who, report in reports.items():
        probe = ", ".join(f"{r2:.2f}" for r2 in report.layers)
        console.print(f"{who}: {report.describe()}; probe R^2 by layer (embedding first): {probe}")
    same = "yes" if verdict.same else "no: " + "; ".join(verdict.reasons)
    console.print(f"training re-derived position the crafted way: {same}")
    return {"diff": d, "reports": reports, "same": verdict.same, "verdict": verdict}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="training steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.steps, seed=args.seed)
