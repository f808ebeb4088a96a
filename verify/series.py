"""``craft diff CRAFTED RUN_DIR/``: when does training find each part of the circuit?

A run folder holds the checkpoints ``craft train --save-every N`` writes
(``step_NNNNNN.safetensors``). For each checkpoint, on the same sampled tokens:

* per crafted attention component, the match (:func:`verify.matching.match`): the
  similarity of the match set's summed circuit, the best role score, and whether a
  match exists at all;
* per rule, the excess loss ``KL(true || model)`` (float32 forward, float64 loss).

From the curves: a component is *found at* the first step from which it stays matched
to the end of the series, and a rule is *learned at* the first step from which its
excess loss stays below ``LEARNED`` nats. Sorting the components by that step answers
"in which order": e.g. does the induction head wait for the previous-token head?

Ablations and patching (the expensive, causal half of :mod:`verify.diff`) are not run
per checkpoint: diff the final model for those.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from craft.models import Transformer, load_model
from specs.errors import CraftError
from specs.model import Spec
from specs.sample import sample
from verify.diff import as_runner, check_fit, rule_excess
from verify.matching import (
    MIN_SCORE,
    PATTERN_SEQS,
    RoleScores,
    components,
    match_all,
    raw_patterns,
    role_scores,
)

LEARNED = 0.1  # nats: a rule is learned once its excess loss stays below this
STEP_FILE = re.compile(r"step_(\d+)\.safetensors$")


@dataclass(frozen=True)
class Point:
    """One checkpoint: per component similarity, role and match; per rule excess loss."""

    step: int
    similarity: dict[str, float]
    role: dict[str, float]
    matched: dict[str, bool]
    excess: dict[str, float]  # per rule
    excess_overall: float = 0.0  # over every position

    def to_json(self) -> dict:
        return {
            "step": self.step,
            "similarity": self.similarity,
            "role": self.role,
            "matched": self.matched,
            "excess": self.excess,
            "excess_overall": self.excess_overall,
        }


@dataclass(frozen=True)
class Series:
    """The curves of a run against a crafted model, in step order."""

    spec: str
    points: tuple[Point, ...]
    n_seqs: int
    seed: int

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(self.points[0].similarity) if self.points else ()

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(self.points[0].excess) if self.points else ()

    def found_at(self) -> dict[str, int | None]:
        """Per component, the first step from which it stays matched (None: not at the end)."""
        return {
            c: _settled([p.step for p in self.points], [p.matched[c] for p in self.points])
            for c in self.components
        }

    def learned_at(self) -> dict[str, int | None]:
        """Per rule, the first step from which its excess loss stays below ``LEARNED``."""
        return {
            r: _settled([p.step for p in self.points], [p.excess[r] < LEARNED for p in self.points])
            for r in self.rules
        }

    def order(self) -> list[tuple[str, int]]:
        """Components found by the end, in the order they were found."""
        found = [(c, s) for c, s in self.found_at().items() if s is not None]
        return sorted(found, key=lambda cs: cs[1])

    def to_json(self) -> dict:
        return {
            "spec": self.spec,
            "n_seqs": self.n_seqs,
            "seed": self.seed,
            "learned_below": LEARNED,
            "found_at": self.found_at(),
            "learned_at": self.learned_at(),
            "order": [c for c, _ in self.order()],
            "points": [p.to_json() for p in self.points],
        }


def _settled(steps: list[int], ok: list[bool]) -> int | None:
    """The first step of the final run of ``True`` (None when the last value is False)."""
    if not ok or not ok[-1]:
        return None
    i = len(ok) - 1
    while i > 0 and ok[i - 1]:
        i -= 1
    return steps[i]


def checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, file)`` of every ``step_NNNNNN.safetensors`` in ``run_dir``, by step."""
    folder = Path(run_dir)
    found = sorted(
        (int(m.group(1)), p) for p in folder.iterdir() if (m := STEP_FILE.search(p.name))
    )
    if not found:
        raise CraftError(
            "the folder holds no step_NNNNNN.safetensors checkpoints",
            where=str(run_dir),
            fix="pass the run folder of `craft train --save-every N -o OUT` (OUT_run/)",
        )
    return found


def point(
    crafted: Transformer,
    trained: Transformer,
    spec: Spec,
    step: int,
    tokens: np.ndarray,
    own: tuple[RoleScores, np.ndarray],
    seed: int,
) -> Point:
    """Match every component and measure every rule at one checkpoint."""
    check_fit(crafted, trained, spec)
    _, matches = match_all(crafted, as_runner(trained), spec, tokens, seed, own)
    sims = {m.component.name: m.similarity for m in matches}
    best = {m.component.name: max((x.role for x in m.scores), default=0.0) for m in matches}
    matched = {m.component.name: m.found for m in matches}
    excess = rule_excess(as_runner(trained, torch.float32), spec, tokens, {})
    return Point(step, sims, best, matched, excess.rules, excess.overall)


def series(
    crafted: Transformer,
    run_dir: str | Path,
    spec: Spec,
    *,
    n_seqs: int = 200,
    seed: int = 0,
    progress=None,
) -> Series:
    """The curves of every checkpoint in ``run_dir`` against ``crafted``.

    Args:
        crafted: the compiled model (its component records name what to track).
        run_dir: a folder of ``step_NNNNNN.safetensors`` checkpoints.
        spec: the spec both were made for.
        n_seqs: sampled sequences per checkpoint (the same ones for every checkpoint).
        seed: sampling and probe seed.
        progress: optional ``callable(done, total)`` called after each checkpoint.

    Raises:
        CraftError: no checkpoints, or a checkpoint that does not fit the spec.
    """
    files = checkpoints(run_dir)
    first = load_model(files[0][1])
    length = min(spec.max_len, crafted.cfg.n_ctx - 1, first.cfg.n_ctx - 1)
    tokens, _ = sample(spec, n_seqs, length, seed)
    rc = as_runner(crafted)
    comps = components(crafted)
    own = (role_scores(rc, spec, comps, seed), raw_patterns(rc, tokens[:PATTERN_SEQS]))
    points = []
    for i, (step, path) in enumerate(files):
        model = first if i == 0 else load_model(path)
        points.append(point(rc, model, spec, step, tokens, own, seed))
        if progress is not None:
            progress(i + 1, len(files))
    return Series(spec.name, tuple(points), n_seqs, seed)


def plot(s: Series, out_dir: str | Path) -> list[Path]:
    """``series_components.png`` (similarity solid, role dashed, per component) and
    ``series_rules.png`` (excess loss per rule, log scale) under ``out_dir/figures``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from craft.models.io import atomic_write

    figures = Path(out_dir) / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    steps = [p.step for p in s.points]
    paths = []
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    for k, comp in enumerate(s.components):
        colour = f"C{k % 10}"
        ax.plot(steps, [p.similarity[comp] for p in s.points], color=colour, label=comp)
        ax.plot(steps, [p.role[comp] for p in s.points], color=colour, linestyle="--")
    ax.axhline(MIN_SCORE, color="grey", linewidth=0.8)
    ax.set_xlabel("training step")
    ax.set_ylabel("similarity (solid) / best role score (dashed)")
    ax.set_title(f"crafted components in the trained model (grey: {MIN_SCORE}, the match bar)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    paths.append(_save(fig, figures / "series_components.png", atomic_write))
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    for k, rule in enumerate(s.rules):
        values = [max(p.excess[rule], 1e-6) for p in s.points]
        style = ("-", "--", ":")[k // 10 % 3]
        ax.plot(steps, values, color=f"C{k % 10}", linestyle=style, label=rule)
    ax.axhline(LEARNED, color="grey", linewidth=0.8)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("excess loss, nats (log)")
    ax.set_title(f"excess loss per rule (grey: {LEARNED} nats, 'learned')")
    paths.append(_save(fig, figures / "series_rules.png", atomic_write))
    return paths


def _save(fig, path: Path, atomic_write) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path


def markdown(s: Series) -> str:
    """``series.md``: the order components were found in, the steps, the figures."""
    found, learned = s.found_at(), s.learned_at()
    order = ", ".join(f"{c} (step {st})" for c, st in s.order()) or "none found by the end"
    lines = [
        f"# craft diff over training: spec {s.spec}",
        "",
        f"{len(s.points)} checkpoints, steps {s.points[0].step} to {s.points[-1].step}; "
        f"{s.n_seqs} sampled sequences (seed {s.seed}), the same for every checkpoint.",
        "",
        f"Order found: {order}.",
        "",
        "| component | found at step | final similarity | final role score |",
        "|---|---|---|---|",
    ]
    last = s.points[-1]
    for c in s.components:
        at = "-" if found[c] is None else str(found[c])
        lines.append(f"| {c} | {at} | {last.similarity[c]:.3f} | {last.role[c]:.3f} |")
    lines += [
        "",
        f"| rule | learned at step (excess < {LEARNED} nats from then on) | final excess |",
        "|---|---|---|",
    ]
    for r in s.rules:
        at = "-" if learned[r] is None else str(learned[r])
        lines.append(f"| {r} | {at} | {last.excess[r]:.4f} |")
    lines += [
        "",
        "![components](figures/series_components.png)",
        "",
        "![rules](figures/series_rules.png)",
        "",
        "A component is found at the first step from which it stays matched (see "
        "verify/matching.py); ablation and patching are not run per checkpoint (diff the "
        "final model for the causal check).",
        "",
    ]
    return "\n".join(lines)


def write_series(s: Series, out_dir: str | Path) -> Path:
    """Write the figures and ``series.md`` (last, atomically); returns its path."""
    from craft.models.io import atomic_write

    plot(s, out_dir)
    path = Path(out_dir) / "series.md"
    text = markdown(s)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path
