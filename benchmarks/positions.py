"""Position-free crafted models: where float32 stops meeting the bound.

    python benchmarks/positions.py              # the table (about a minute on 2 cores)
    python benchmarks/positions.py --n 200      # fewer sequences per row

For each ``max_len``, the induction spec (``specs/library/induction.yaml`` with its
``max_len`` replaced) is compiled in the standard family, then made position-free by
:func:`craft.compiler.positions.derive_positions`, in float32 and in float64. Each row
gives the largest error of the derived position code (against the learned table it
replaces) and the largest KL from the spec's exact distribution over every position of
``--n`` sampled sequences of full length, next to the compiled model's guaranteed bound
and the same figure for the model with learned positions. The float32 limit is the
largest ``max_len`` whose derived float32 model still meets the bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # not benchmarks/: its tracr.py would shadow Tracr

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from craft.compiler import compile_spec  # noqa: E402
from craft.compiler.positions import derive_positions  # noqa: E402
from specs.load import load_spec  # noqa: E402
from specs.sample import sample  # noqa: E402
from specs.truth import truth  # noqa: E402

LENGTHS = (16, 32, 64, 128, 256, 512)


@torch.no_grad()
def max_kl(model, spec, n: int) -> float:
    """Largest KL(spec || model) over every position of ``n`` sampled sequences."""
    tokens, _ = sample(spec, n, spec.max_len, seed=0)
    probs, _ = truth(spec, tokens)
    logp = model(torch.as_tensor(tokens)).to(torch.float64).log_softmax(-1)
    p = torch.as_tensor(probs, dtype=torch.float64)
    terms = torch.where(p > 0, p * (p.clamp_min(1e-300).log() - logp), torch.zeros_like(p))
    return float(terms.sum(-1).max())


def row(base, max_len: int, n: int) -> list[str]:
    spec = dataclasses.replace(base, max_len=max_len)
    out = []
    for dtype in ("float32", "float64"):
        compiled = compile_spec(spec, "standard", dtype)
        derived = derive_positions(compiled.model)
        bound = max(compiled.model.meta["bounds"].values())
        if dtype == "float32":
            out += [f"{bound:.2e}", f"{max_kl(compiled.model, spec, n):.2e}"]
        kl = max_kl(derived, spec, n)
        out += [f"{derived.meta['positions']['code_error']:.2e}", f"{kl:.2e}", _ok(kl, bound)]
    return [str(max_len), *out]


def _ok(kl: float, bound: float) -> str:
    return "yes" if kl <= bound else "NO"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="sequences a row")
    args = parser.parse_args()
    base = load_spec(ROOT / "specs/library/induction.yaml")
    table = Table(title="position-free induction model: derived position code vs bound")
    for col in (
        "max_len",
        "bound",
        "learned f32 KL",
        "code err f32",
        "derived f32 KL",
        "f32 ok",
        "code err f64",
        "derived f64 KL",
        "f64 ok",
    ):
        table.add_column(col, justify="right")
    limit, meets = None, True
    for length in LENGTHS:
        cells = row(base, length, args.n)
        table.add_row(*cells)
        meets = meets and cells[5] == "yes"
        limit = length if meets else limit
    Console(width=150).print(table)
    print(f"float32 limit (largest max_len meeting the bound in float32): {limit}")


if __name__ == "__main__":
    main()
