"""Loss-curve figure: excess loss per rule group against training step, and the loss.

Rules are grouped by kind and by whether they are deterministic (:func:`rule_groups`):
one colour a group (tab10, distinguishable), the group's mean as a thick line and each
of its rules as a thin one; the legend sits outside the data. The training loss (the
mean cross-entropy since the previous record) is on its own axis below.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from craft.compiler.kinds import kind_of
from craft.models.io import atomic_write
from specs.errors import CraftError
from specs.kinds import kind_of as specs_kind_of
from specs.model import START_RULE, Spec

FLOOR = 1e-6  # excess losses below this are drawn at this value (log axis)


def rule_groups(spec: Spec) -> dict[str, str]:
    """Rule name -> group label, as each rule's kind names it
    (:meth:`~craft.compiler.kinds.base.RuleKind.group`): ``trigram (deterministic)``,
    ``skip-bigram (distribution)``, ``induction``, ``bigram``; and ``start``. A rule
    the compiler cannot build yet (a bracket rule) is grouped by its YAML key: training
    needs only the spec."""
    groups = {START_RULE: "start"}
    for rule in spec.rules:
        try:
            groups[rule.name] = kind_of(rule).group(rule)
        except CraftError:  # a kind the compiler does not build yet: its spec key
            groups[rule.name] = specs_kind_of(rule).key
    return groups


def plot_records(
    records: Sequence[dict],
    path: str | Path,
    title: str = "",
    groups: dict[str, str] | None = None,
) -> Path:
    """Write the PNG (atomically) and return its path.

    Args:
        records: log records as written by :func:`craft.train.loop.train`.
        path: the PNG to write.
        title: figure title.
        groups: rule name -> group label (:func:`rule_groups`); None: one group a rule.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    rules = [k for k in (records[-1]["excess"] if records else {}) if k != "overall"]
    groups = groups or {rule: rule for rule in rules}
    labels = list(dict.fromkeys(groups.get(rule, rule) for rule in rules))
    fig, (ax, loss_ax) = plt.subplots(
        2, 1, figsize=(10, 7), dpi=100, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    cmap = plt.get_cmap("tab10")
    for i, label in enumerate(labels):
        members = [rule for rule in rules if groups.get(rule, rule) == label]
        curves = [[max(FLOOR, r["excess"].get(m, float("nan"))) for r in records] for m in members]
        for curve in curves if len(curves) > 1 else []:
            ax.plot(steps, curve, color=cmap(i % 10), linewidth=0.6, alpha=0.45)
        mean = [sum(c[j] for c in curves) / len(curves) for j in range(len(steps))]
        ax.plot(steps, mean, color=cmap(i % 10), linewidth=2.0, label=f"{label} ({len(members)})")
    overall = [max(FLOOR, r["excess"]["overall"]) for r in records if "overall" in r["excess"]]
    if len(overall) == len(steps):
        ax.plot(steps, overall, label="overall", color="black", linewidth=2.4, linestyle="--")
    ax.set_yscale("log")
    ax.set_ylabel("excess loss KL(true || model), nats", fontsize=10)
    ax.set_title(title or "excess loss by rule group during training", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="group (rules)")
    _loss(loss_ax, records)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), "the plot")
    plt.close(fig)
    return path


def _loss(ax, records: Sequence[dict]) -> None:
    """The training loss (mean cross-entropy since the previous record), nats."""
    points = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None]
    if points:
        ax.plot(*zip(*points, strict=True), color="tab:gray", linewidth=1.6, label="loss")
    ax.set_xlabel("step", fontsize=10)
    ax.set_ylabel("training loss, nats", fontsize=10)
    ax.grid(True, alpha=0.3)
