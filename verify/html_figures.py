"""Figures for the HTML report, drawn to read at a glance (PNG bytes, 100 dpi).

* :func:`draw_direct_path`: one model's ``W_E W_U`` over the spec's tokens, row-centred,
  with lines between the vocabulary's categories and the category names on both axes.
* :func:`draw_panel`: a :class:`verify.report.Panel` (crafted | trained) on **one shared
  colour scale** (symmetric about 0, the larger of the two panels' largest entries), its
  unit in the colourbar; the trained title names the matched heads and says when the
  panel is their sum.

Tick labels are at least 7 pt at 100 dpi; token axes carry every token.
"""

from __future__ import annotations

import io

import numpy as np

from specs.model import Spec

DPI = 100
CMAP = "RdBu_r"
TICK_PT = 7


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _categories(ax, spec: Spec, n: int) -> None:
    """Separator lines between categories and their names beside both axes."""
    start = 0
    for name, toks in spec.vocab.categories:
        end = min(start + len(toks), n)
        if start >= n:
            break
        if end < n:
            ax.axhline(end - 0.5, color="black", lw=0.8)
            ax.axvline(end - 0.5, color="black", lw=0.8)
        mid = (start + end - 1) / 2
        ax.text(-0.16, mid, name, transform=ax.get_yaxis_transform(), ha="right",
                va="center", fontsize=TICK_PT + 1, fontweight="bold")  # fmt: skip
        ax.text(mid, 1.01, name, transform=ax.get_xaxis_transform(), ha="center",
                va="bottom", fontsize=TICK_PT + 1, fontweight="bold", rotation=45)  # fmt: skip
        start = end


def draw_direct_path(matrix: np.ndarray, spec: Spec, title: str) -> bytes:
    """``matrix [V', V']``: the direct path over the spec's first ``V'`` tokens (rows:
    input token, columns: logit), row-centred by the caller."""
    plt = _plt()
    n = matrix.shape[0]
    names = spec.vocab.tokens[:n]
    size = max(5.0, min(11.0, 0.17 * n + 2))
    fig, ax = plt.subplots(figsize=(size + 1.6, size), dpi=DPI)
    vmax = float(np.abs(matrix).max()) or 1.0
    im = ax.imshow(matrix, cmap=CMAP, vmin=-vmax, vmax=vmax, aspect="equal")
    ax.set_xticks(range(n), names, rotation=90, fontsize=TICK_PT)
    ax.set_yticks(range(n), names, fontsize=TICK_PT)
    ax.set_xlabel("next token (logit)", fontsize=9)
    ax.set_ylabel("input token", fontsize=9)
    _categories(ax, spec, n)
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    bar.set_label("logit, row-centred (nats)", fontsize=9)
    ax.set_title(title, fontsize=10, pad=34)
    return _png(fig)


def _unit(panel) -> str:
    """The colourbar label of a panel: OV and direct path are logits, QK scores."""
    if panel.xlabel == "logit":
        return "logit, row-centred (nats)"
    return "attention score q.k/sqrt(d_head), row-centred"


def _in_vocab_order(panel, spec: Spec | None) -> bool:
    """Whether both axes are the spec's first tokens in order (categories apply)."""
    if spec is None:
        return False
    names = spec.vocab.tokens[: len(panel.rows)]
    several = len({spec.vocab.category_of(t) for t in names}) > 1  # else nothing to separate
    return several and tuple(panel.rows) == tuple(names) == tuple(panel.cols)


def draw_panel(
    panel, trained_heads: tuple[tuple[int, int], ...] = (), spec: Spec | None = None
) -> bytes:
    """Crafted | trained on one shared colour scale (see the module docstring); with
    ``spec``, token-by-token panels in vocabulary order get the category separators."""
    plt = _plt()
    n_r, n_c = panel.crafted.shape
    size = max(3.6, min(8.0, 0.17 * max(n_r, n_c) + 1.6))
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1.4, size), dpi=DPI)
    vmax = max(float(np.abs(panel.crafted).max()), float(np.abs(panel.trained).max())) or 1.0
    heads = [f"L{la}H{h}" for la, h in trained_heads]
    trained = f"trained: sum of {' + '.join(heads)}" if len(heads) > 1 else "trained"
    trained += f" {heads[0]}" if len(heads) == 1 else ""
    for ax, data, side in zip(axes, (panel.crafted, panel.trained), ("crafted", trained),
                              strict=True):  # fmt: skip
        im = ax.imshow(data, cmap=CMAP, vmin=-vmax, vmax=vmax, aspect="auto")
        ax.set_title(side, fontsize=9, pad=40 if _in_vocab_order(panel, spec) else 6)
        ax.set_xlabel(panel.xlabel, fontsize=8)
        ax.set_ylabel(panel.ylabel, fontsize=8)
        ax.set_xticks(range(n_c), panel.cols, rotation=90, fontsize=TICK_PT)
        ax.set_yticks(range(n_r), panel.rows, fontsize=TICK_PT)
        if _in_vocab_order(panel, spec):
            _categories(ax, spec, n_r)  # type: ignore[arg-type]
        if panel.rows and panel.rows[0] == "BOS":  # position 0 is BOS: set it apart
            ax.axhline(0.5, color="black", lw=0.6, ls="--")
            ax.axvline(0.5, color="black", lw=0.6, ls="--")
    if _in_vocab_order(panel, spec):
        fig.subplots_adjust(wspace=0.45)  # room for the trained panel's category names
    bar = fig.colorbar(im, ax=list(axes), fraction=0.03, pad=0.02)
    bar.set_label(f"{_unit(panel)}; one scale for both", fontsize=8)
    fig.suptitle(panel.title, fontsize=10, y=1.07 if _in_vocab_order(panel, spec) else 0.98)
    return _png(fig)


def panel_heads(title: str) -> tuple[tuple[int, int], ...]:
    """The trained heads a panel title names after ``| trained`` (none: direct path)."""
    import re

    after = title.split("| trained", 1)[1] if "| trained" in title else ""
    return tuple((int(a), int(b)) for a, b in re.findall(r"L(\d+)H(\d+)", after))
