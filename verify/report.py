"""The ``craft diff`` report: Markdown tables and side-by-side (crafted | trained) heatmaps.

:func:`panels` cuts small, readable matrices out of the circuits that were compared: the
direct path over (at most ``MAX_TOKENS``) tokens, and per matched component each
compared circuit restricted to the tokens its rules mention (the first ``MAX_POS``
positions for position QK). The trained side is the match set's summed circuit. Both
are centred as they were for the comparison (rows for OV and softmax QK), so equal
pictures mean equal circuits up to scale: each panel has its own colour scale.

:func:`write_report` writes ``report.md`` and ``figures/*.png``, every file atomically
(a temporary file, then ``os.replace``), PNGs first and the Markdown last.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from craft.models.io import atomic_write
from craft.models.transformer import Transformer
from specs.model import Spec
from verify.circuits import direct_path
from verify.factored import Factored, Matrix
from verify.matching import Match, add, centring, compared

if TYPE_CHECKING:
    from verify.diff import ComponentDiff, Diff

MAX_TOKENS = 40
MAX_POS = 16


@dataclass(frozen=True, eq=False)
class Panel:
    """One figure: the same circuit of both models, restricted to readable rows/columns."""

    title: str
    file: str  # PNG name under figures/
    crafted: np.ndarray  # [R, C]
    trained: np.ndarray  # [R, C]
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    xlabel: str
    ylabel: str


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def _cut(m: Matrix, ids: list[int]) -> np.ndarray:
    """``m[ids][:, ids]`` without materialising a factored ``m``."""
    if isinstance(m, Factored):
        return m.rows(ids).columns(ids).dense()
    return m[np.ix_(ids, ids)]


def panels(
    crafted: Transformer, trained: Transformer, spec: Spec, matches: list[Match]
) -> list[Panel]:
    """Heatmap panels: the direct path, then each compared circuit of each matched component."""
    names = spec.vocab.tokens
    every = list(range(min(len(names), MAX_TOKENS)))
    out = [
        Panel(
            "direct path W_E W_U (row-centred)",
            "direct_path.png",
            _cut(direct_path(crafted).centre("rows"), every),
            _cut(direct_path(trained).centre("rows"), every),
            tuple(names[i] for i in every),
            tuple(names[i] for i in every),
            "logit",
            "input token",
        )
    ]
    for m in matches:
        if not m.found:
            continue
        c = m.component
        ids = list(m.tokens) if 0 < len(m.tokens) <= MAX_TOKENS else every
        n_pos = min(MAX_POS, crafted.cfg.n_ctx, trained.cfg.n_ctx)
        for kind in m.basis:
            centre = centring(kind, crafted, trained)
            mine = compared(crafted, kind, (c.layer, c.head), centre, n_pos)
            theirs = add([compared(trained, kind, h, centre, n_pos) for h in m.heads])
            if kind == "qk_positions":
                rows = list(range(n_pos))
                labels = tuple(str(p) for p in rows)
                axes = ("key position", "query position")
            else:
                rows = ids
                labels = tuple(names[i] for i in ids)
                axes = (
                    ("key token", "query token")
                    if kind == "qk_tokens"
                    else ("logit", "attended token")
                )
            heads = ", ".join(f"L{la}H{h}" for la, h in m.heads)
            out.append(
                Panel(
                    f"{c.name} {kind}: crafted L{c.layer}H{c.head} | trained {heads}",
                    f"{_slug(c.name)}_{kind}.png",
                    _cut(mine, rows),
                    _cut(theirs, rows),
                    labels,
                    labels,
                    *axes,
                )
            )
    return out


def _draw(panel: Panel, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_r, n_c = panel.crafted.shape
    size = max(3.5, min(9.0, 0.18 * max(n_r, n_c) + 1.5))
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size), dpi=100)
    for ax, data, side in zip(
        axes, (panel.crafted, panel.trained), ("crafted", "trained"), strict=True
    ):
        vmax = float(np.abs(data).max()) or 1.0
        im = ax.imshow(data, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
        ax.set_title(side, fontsize=9)
        ax.set_xlabel(panel.xlabel, fontsize=8)
        ax.set_ylabel(panel.ylabel, fontsize=8)
        ax.set_xticks(range(n_c), panel.cols, rotation=90, fontsize=6)
        ax.set_yticks(range(n_r), panel.rows, fontsize=6)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(panel.title, fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def effect(c: ComponentDiff, most: int = 3) -> str:
    """The (at most ``most``) rules the crafted zero-ablation hurts most: excess-loss rise,
    crafted -> trained."""
    parts = []
    for rule in sorted(c.hurt, key=lambda r: -c.crafted.zero[r])[:most]:
        trained = "no match" if c.trained is None else f"{c.trained.zero[rule]:+.3f}"
        parts.append(f"{rule} {c.crafted.zero[rule]:+.3f} -> {trained}")
    more = f"; {len(c.hurt) - most} more rules" if len(c.hurt) > most else ""
    return "; ".join(parts) + more if parts else "-"


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _heads(heads) -> str:
    return ", ".join(f"L{la}H{h}" for la, h in heads) or "-"


def markdown(d: Diff, figures: list[Panel]) -> str:
    """The report's Markdown text (figures referenced under ``figures/``)."""
    lines = [
        f"# craft diff: spec {d.spec}",
        "",
        f"{d.n_seqs} sampled sequences of {d.length} tokens (seed {d.seed}); both models run "
        "in float64. Excess loss = KL(true || model) in nats.",
        "",
        "## Summary",
        "",
        "| component | kind | crafted head | match | similarity | zero-ablation, rules the crafted "
        "head serves: crafted -> trained | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in d.components:
        m = c.match
        lines.append(
            f"| {m.component.name} | {m.component.kind} | L{m.component.layer}"
            f"H{m.component.head} | {_heads(m.heads)} | {_f(m.similarity)} | "
            f"{effect(c)} | **{c.verdict}** |"
        )
    if d.not_compared:
        lines += ["", f"Not compared (MLP components): {', '.join(d.not_compared)}."]
    lines += [
        "",
        "## Behaviour per rule",
        "",
        "| rule | n | CE crafted | CE trained | excess crafted | excess trained | "
        "acc crafted | acc trained | KL(crafted \\|\\| trained) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = {**d.crafted.rules, "overall": d.crafted.overall}
    trained = {**d.trained.rules, "overall": d.trained.overall}
    for rule, a in rows.items():
        b = trained[rule]
        lines.append(
            f"| {rule} | {a.n} | {_f(a.ce)} | {_f(b.ce)} | {_f(a.kl, 4)} | {_f(b.kl, 4)} "
            f"| {_f(a.accuracy)} | {_f(b.accuracy)} | {_f(d.agreement.get(rule), 4)} |"
        )
    direct = "n/a (the crafted direct path is constant)" if d.direct is None else f"{d.direct:.3f}"
    lines += [
        "",
        "## Weights",
        "",
        f"Direct path W_E W_U similarity (row-centred cosine): **{direct}**",
        "",
        "![direct path](figures/direct_path.png)",
        "",
    ]
    lines += _roles(d)
    for c in d.components:
        lines += _component_section(c, figures)
    lines += [
        "",
        "## How to read this",
        "",
        "Similarities are cosines of gauge-invariant circuits (1: equal up to scale). A head "
        "joins a component's match set when it scores at least half the best head and adding "
        "its circuit to the set's summed circuit raises the similarity (see verify/matching.py). "
        "Verdict: found = matched and zero-ablating the match hurts every rule that ablating "
        "the crafted head hurts; partly = matched, some of those rules not relied on; "
        "missing = no match.",
        "",
    ]
    return "\n".join(lines)


def _roles(d: Diff) -> list[str]:
    r = d.roles
    prefix = list(r.prefix_matching)
    lines = [
        "Role scores of the trained heads (previous-token; prefix matching per induction rule;"
        " copying):",
        "",
        "| head | previous-token | " + "".join(f"prefix {p} | " for p in prefix) + "copying |",
        "|---|---|" + "---|" * len(prefix) + "---|",
    ]
    for (la, h), prev in np.ndenumerate(r.previous_token):
        cells = "".join(f"{_f(r.prefix_matching[p][la, h])} | " for p in prefix)
        lines.append(f"| L{la}H{h} | {_f(prev)} | {cells}{_f(r.copying[la, h])} |")
    return lines


def _component_section(c: ComponentDiff, figures: list[Panel]) -> list[str]:
    m = c.match
    comp = m.component
    basis = ", ".join(m.basis) or f"role score ({m.role})"
    lines = [
        "",
        f"### {comp.name} ({comp.kind}, crafted L{comp.layer}H{comp.head}): {c.verdict}",
        "",
        f"Compared by: {basis}; rules: {', '.join(comp.rules) or '-'}; crafted role "
        f"score: {_f(m.crafted_role)}. Match: {_heads(m.heads)} at similarity "
        f"{_f(m.similarity)}.",
        "",
        "| trained head | " + " | ".join(m.basis) + " | similarity | role |",
        "|---|" + "---|" * (len(m.basis) + 2),
    ]
    for s in m.scores:
        cells = " | ".join(_f(s.circuits[k]) for k in m.basis)
        mark = " *" if s.head in m.heads else ""
        lines.append(
            f"| L{s.head[0]}H{s.head[1]}{mark} | {cells}{' | ' if cells else ''}"
            f"{_f(s.similarity)} | {_f(s.role)} |"
        )
    rules = [r for r in c.crafted.zero if r != "overall"]
    lines += [
        "",
        "Ablation (all matched heads at once): per-rule excess-loss change, nats",
        "",
        "| ablation | " + " | ".join(rules) + " |",
        "|---|" + "---|" * len(rules),
    ]
    runs = [("crafted zero", c.crafted.zero), ("crafted mean", c.crafted.mean)]
    if c.trained is not None:
        runs += [("trained zero", c.trained.zero), ("trained mean", c.trained.mean)]
    for name, values in runs:
        lines.append(f"| {name} | " + " | ".join(f"{values[r]:+.4f}" for r in rules) + " |")
    for p in figures:
        if p.file.startswith(_slug(comp.name) + "_"):
            lines += ["", f"![{p.title}](figures/{p.file})"]
    return lines


def write_report(d: Diff, out_dir: str | Path) -> Path:
    """Write ``report.md`` and ``figures/*.png`` under ``out_dir``; returns the report path."""
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for p in d.panels:
        _draw(p, out / "figures" / p.file)
    path = out / "report.md"
    text = markdown(d, list(d.panels))
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path
