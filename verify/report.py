"""The ``craft diff`` report: Markdown tables and side-by-side (crafted | trained) heatmaps.

:func:`panels` cuts small, readable matrices out of the circuits that were compared: the
direct path over (at most ``MAX_TOKENS``) tokens, and per matched component each
compared circuit restricted to the tokens its rules mention (every position both models
have for position QK, BOS labelled). The trained side is the match set's summed circuit.
Both are centred as they were for the comparison (rows for OV and softmax QK), so equal
pictures mean equal circuits up to scale; both sides of a figure share one colour scale
(:func:`verify.html_figures.draw_panel`).

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


def position_labels(n: int) -> tuple[str, ...]:
    """Tick labels of a position axis: ``BOS`` at 0, then every position up to 24
    positions, every 8th beyond (readable at 100 dpi)."""
    step = 1 if n <= 24 else 8
    return tuple("BOS" if p == 0 else str(p) if p % step == 0 else "" for p in range(n))


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
        n_pos = min(crafted.cfg.n_ctx, trained.cfg.n_ctx)  # every position both have
        for kind in m.basis:
            centre = centring(kind, crafted, trained)
            mine = compared(crafted, kind, (c.layer, c.head), centre, n_pos)
            theirs = add([compared(trained, kind, h, centre, n_pos) for h in m.heads])
            if kind == "qk_positions":
                rows = list(range(n_pos))
                labels = position_labels(n_pos)
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


def _draw(panel: Panel, path: Path, spec: Spec | None) -> None:
    """The PNG of a panel: the HTML report's figure (one shared, labelled colour scale,
    category separators with ``spec``, BOS set apart; :mod:`verify.html_figures`)."""
    from verify.html_figures import draw_panel, panel_heads

    png = draw_panel(panel, panel_heads(panel.title), spec)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(png), "a figure")


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
        "in float64 (ablations and patching in float32, or float64 for a model that must run "
        "in it). Excess loss = KL(true || model) in nats.",
        "",
        "## Summary",
        "",
        "| component | kind | crafted head | match | similarity | zero-ablation, rules the crafted "
        "head serves: crafted -> trained | patching, share carried: crafted -> trained "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in d.components:
        m = c.match
        lines.append(
            f"| {m.component.name} | {m.component.kind.value} | L{m.component.layer}"
            f"H{m.component.head} | {_heads(m.heads)} | {_f(m.similarity)} | "
            f"{effect(c)} | {carried(c)} | **{c.verdict}** |"
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
    rows = [(r, a, d.trained.rules[r], d.agreement.get(r)) for r, a in d.crafted.rules.items()]
    rows.append(("**overall**", d.crafted.overall, d.trained.overall, d.agreement_overall))
    for rule, a, b, agree in rows:  # a list: a rule named `overall` keeps its own row
        lines.append(
            f"| {rule} | {a.n} | {_f(a.ce)} | {_f(b.ce)} | {_f(a.kl, 4)} | {_f(b.kl, 4)} "
            f"| {_f(a.accuracy)} | {_f(b.accuracy)} | {_f(agree, 4)} |"
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
    lines += _composition(d)
    for c in d.components:
        lines += _component_section(c, figures)
    lines += [
        "",
        "## How to read this",
        "",
        "Similarities are cosines of gauge-invariant circuits (1: equal up to scale). A head "
        "joins a component's match set when its role score is at least 0.3 and half the best "
        "head's, or when adding its circuit to the set's summed circuit raises the similarity "
        "(see verify/matching.py). Composition scores are ||A B|| / (||A|| ||B||) of an earlier "
        "head's OV with a later head's QK (Q, K) or OV (V). Verdict: found = matched, and for "
        "every rule that zero-ablating the crafted head hurts (by 0.01 nats or more), "
        "zero-ablating the match costs the trained model at least 0.1 nats or patching shows "
        "the match carries at least half of the rule's output; partly = matched, but some of "
        "those rules do not rely on it; diffuse = the match set holds more than half of the "
        "trained model's heads, which localises nothing (its ablation and patching figures "
        "say nothing about the component); missing = no match (see verify/diff.py).",
        "",
    ]
    return "\n".join(lines)


def _roles(d: Diff) -> list[str]:
    r = d.roles
    cols = [("previous-token", r.previous_token)]
    cols += [(f"prefix {k}", v) for k, v in r.prefix_matching.items()]
    cols += [(f"skip-bigram {k}", v) for k, v in r.skip_bigram.items()]
    cols += [(f"condition {k}", v) for k, v in r.condition.items()]
    cols += [("copying", r.copying)]
    lines = [
        "Role scores of the trained heads (attention to the previous token; prefix matching "
        "per induction rule; attention from a cue to its anchors per skip-bigram detector; "
        "condition per trigram or readout head, how much attention to the pair switches with "
        "the rule; copying, the OV eigenvalue score):",
        "",
        "| head | " + " | ".join(name for name, _ in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for la, h in np.ndindex(*r.previous_token.shape):
        lines.append(f"| L{la}H{h} | " + " | ".join(_f(v[la, h]) for _, v in cols) + " |")
    return lines


def _composition(d: Diff) -> list[str]:
    if not d.trained_composition:
        return []
    lines = ["", "## Composition", ""]
    if d.composition:
        lines += [
            "Between crafted components (crafted heads | strongest pair of their trained "
            "matches), Q / K / V composition:",
            "",
            "| from | to | crafted Q | crafted K | crafted V | trained Q | trained K | trained V |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in d.composition:
            t = row.trained
            theirs = "- | - | -" if t is None else f"{t.q:.3f} | {t.k:.3f} | {t.v:.3f}"
            c = row.crafted
            lines.append(
                f"| {row.src} | {row.dst} | {c.q:.3f} | {c.k:.3f} | {c.v:.3f} | {theirs} |"
            )
        lines.append("")
    lines += [
        "Every trained head into every later head:",
        "",
        "| from | to | Q | K | V |",
        "|---|---|---|---|---|",
    ]
    for (a, b), c in d.trained_composition.items():
        lines.append(f"| L{a[0]}H{a[1]} | L{b[0]}H{b[1]} | {c.q:.3f} | {c.k:.3f} | {c.v:.3f} |")
    return lines


def _component_section(c: ComponentDiff, figures: list[Panel]) -> list[str]:
    m = c.match
    comp = m.component
    basis = ", ".join(m.basis) or f"role score ({m.role})"
    lines = [
        "",
        f"### {comp.name} ({comp.kind.value}, crafted L{comp.layer}H{comp.head}): {c.verdict}",
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
    rules = list(c.crafted.zero)
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
    lines += _patching_table(c)
    for p in figures:
        if p.file.startswith(_slug(comp.name) + "_"):
            lines += ["", f"![{p.title}](figures/{p.file})"]
    return lines


def _patching_table(c: ComponentDiff) -> list[str]:
    if not c.patching:
        return []
    lines = [
        "",
        "Patching (clean <-> one token swapped for a same-category token; losses against the "
        "clean truth): gap = corrupt minus clean excess loss; carried = share of the gap "
        "caused by corrupting only these heads; restored = share removed by giving a "
        "corrupt run the clean heads.",
        "",
        "| rule | pairs | gap crafted | carried crafted | restored crafted | gap trained | "
        "carried trained | restored trained |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rule, (a, b) in c.patching.items():
        theirs = "- | - | -" if b is None else f"{b.gap:.3f} | {_f(b.carried)} | {_f(b.restored)}"
        lines.append(
            f"| {rule} | {a.n} | {a.gap:.3f} | {_f(a.carried)} | {_f(a.restored)} | {theirs} |"
        )
    return lines


def carried(c: ComponentDiff) -> str:
    """Mean share of its rules' output the component carries (patching), crafted -> trained."""

    def mean(values: list[float | None]) -> str:
        kept = [v for v in values if v is not None]
        return f"{np.mean(kept):.2f}" if kept else "-"

    if not c.patching:
        return "-"
    mine = mean([a.carried for a, _ in c.patching.values()])
    if c.trained is None:
        return f"{mine} -> no match"
    return f"{mine} -> {mean([b.carried for _, b in c.patching.values() if b is not None])}"


def write_report(d: Diff, out_dir: str | Path, spec: Spec | None = None) -> Path:
    """Write ``report.md`` and ``figures/*.png`` under ``out_dir``; returns the report path.
    With ``spec``, token-by-token figures get the vocabulary's category separators."""
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for p in d.panels:
        _draw(p, out / "figures" / p.file, spec)
    path = out / "report.md"
    text = markdown(d, list(d.panels))
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path
