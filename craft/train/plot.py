"""Loss-curve figure: per-rule excess loss against training step (log y axis)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from craft.models.io import atomic_write

FLOOR = 1e-6  # excess losses below this are drawn at this value (log axis)


def plot_records(records: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Write a PNG with one line per rule's excess loss (and the training loss).

    Args:
        records: log records as written by :func:`craft.train.loop.train`.
        path: the PNG to write (atomically).
        title: figure title.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    rules = [k for k in (records[-1]["excess"] if records else {}) if k != "overall"]
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    cmap = plt.get_cmap("tab20")
    for i, rule in enumerate(rules):
        ys = [max(FLOOR, r["excess"].get(rule, float("nan"))) for r in records]
        ax.plot(steps, ys, label=rule, color=cmap(i % 20), linewidth=1.2)
    overall = [max(FLOOR, r["excess"]["overall"]) for r in records if "overall" in r["excess"]]
    if len(overall) == len(steps):
        ax.plot(steps, overall, label="overall", color="black", linewidth=2.2)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("excess loss KL(true || model), nats")
    ax.set_title(title or "per-rule excess loss during training")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), "the plot")
    plt.close(fig)
    return path
