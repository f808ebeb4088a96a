"""What the CLI prints: a model's summary as a dict (for ``--json``) and as rich tables.

:func:`model_summary` reads everything from the model itself (config, residual
layout, ``meta`` written by the compiler), so ``craft compile`` and ``craft inspect``
print the same report; models without a layout or meta (trained, converted) print
what they have. :func:`eval_table` formats a :class:`verify.behaviour.Evaluation`
(passed in as its JSON dict, so this module does not import ``verify``).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from craft.models import ComponentRecord, Transformer, component_records


def model_summary(model: Transformer, *, directions: bool = False) -> dict[str, Any]:
    """Family, config, parameter count, residual layout and provenance of a model.

    Args:
        model: any model; ``layout`` and ``meta`` are optional.
        directions: also list every named residual direction (``"tok:alice"``, ...).

    Returns:
        A JSON-ready dict with keys ``family``, ``config``, ``params``, ``layout``
        (``[{"name", "size"}]`` or None), ``spec``, ``compiler``, ``components``,
        ``constants``, ``bounds``, ``conditions`` (each None/empty when unknown) and,
        with ``directions``, ``directions``.
    """
    meta = model.meta or {}
    layout = model.layout
    out: dict[str, Any] = {
        "family": model.cfg.family,
        "config": model.cfg.to_json(),
        "params": model.n_params(),
        "layout": (
            [{"name": name, "size": size} for name, size in layout.describe()]
            if layout is not None
            else None
        ),
        "spec": meta.get("spec"),
        "compiler": meta.get("compiler"),
        "components": [r.to_json() for r in component_records(model)],
        "constants": dict(meta.get("constants") or {}),
        "bounds": dict(meta.get("bounds") or {}),
        "conditions": list(meta.get("conditions") or []),
        "bound_scope": meta.get("bound_scope"),
        "dtype": meta.get("dtype") or "float32",
        "float32_limit": meta.get("float32_limit"),
        "interference": list(meta.get("interference") or []),
        "codes": dict(meta.get("codes") or {}),
        "derived_positions": meta.get("positions"),
        "products": list(meta.get("products") or []),
    }
    if directions:
        out["directions"] = [str(d) for d in layout] if layout is not None else []
    return out


def _table(title: str, *columns: str, text: int = 1) -> Table:
    """A table whose first ``text`` columns are left-aligned and the rest (numbers) right."""
    table = Table(title=title, title_justify="left", title_style="bold")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i < text else "right")
    return table


def _num(x: float) -> str:
    return f"{x:.4g}"


def print_summary(console: Console, s: dict[str, Any]) -> None:
    """Print the tables of a :func:`model_summary` (empty sections are skipped).

    ``console`` should have ``markup=False``: names may contain brackets.
    """
    cfg = s["config"]
    t = _table("model", "field", "value", text=2)
    for key, value in [
        ("family", s["family"]),
        ("layers", cfg["n_layers"]),
        ("heads", cfg["n_heads"]),
        ("d_model", cfg["d_model"]),
        ("d_head", cfg["d_head"]),
        ("d_mlp", cfg["d_mlp"]),
        ("n_ctx", cfg["n_ctx"]),
        ("vocab in / out", f"{cfg['n_vocab']} / {cfg['n_out']}"),
        ("positions", cfg["positions"]),
        ("parameters", f"{s['params']:,}"),
        ("runs in", s.get("dtype", "float32")),
    ]:
        t.add_row(key, str(value))
    console.print(t)
    if s["spec"] or s["compiler"]:
        t = _table("provenance", "field", "value", text=2)
        spec, compiler = s["spec"] or {}, s["compiler"] or {}
        for key, value in [
            ("spec", spec.get("name")),
            ("spec sha256", spec.get("sha256")),
            ("spec source", spec.get("source")),
            ("compiler version", compiler.get("version")),
        ]:
            if value:
                t.add_row(key, str(value))
        console.print(t)
    if s["layout"]:
        t = _table("residual stream", "subspace", "size", "dims")
        start = 0
        for sub in s["layout"]:
            t.add_row(sub["name"], str(sub["size"]), f"{start}..{start + sub['size'] - 1}")
            start += sub["size"]
        console.print(t)
    if s.get("directions"):
        console.print("directions: " + " ".join(s["directions"]), soft_wrap=True)
    if s["components"]:
        t = _table("components", "layer", "sublayer", "component", "kind", text=4)
        for r in map(ComponentRecord.from_json, s["components"]):
            t.add_row(str(r.layer), r.sublayer, r.name, r.kind.value)
        console.print(t)
    if s["constants"]:
        t = _table("constants", "constant", "value")
        for name, value in s["constants"].items():
            t.add_row(name, _num(value))
        console.print(t)
    if s["bounds"]:
        t = _table("guaranteed bounds", "rule", "max KL (nats)")
        for name, value in s["bounds"].items():
            t.add_row(name, _num(value))
        console.print(t)
    _print_scope(console, s)


def _print_scope(console: Console, s: dict[str, Any]) -> None:
    """Where the bounds hold, the interference behind them, and the feature codes."""
    if s["conditions"]:
        console.print("the bounds hold on contexts where:", style="bold")
        for c in s["conditions"]:
            console.print(f"  - {c}", soft_wrap=True)
    elif s.get("bound_scope"):
        console.print(f"the bounds hold on {s['bound_scope']}", style="bold")
    if s.get("float32_limit") is not None:
        console.print(
            f"float32 limit: max_len {s['float32_limit']} (the largest at which float32 meets "
            "the bounds: tensor induction's recency weights grow as 3**max_len, a bracket "
            "depth code's rounding as max_len**2; beyond it the model runs in float64)",
            soft_wrap=True,
        )
    if s.get("products"):
        console.print("layers added for exactness (tensor family):", style="bold")
        for line in s["products"]:
            console.print(f"  - {line}", soft_wrap=True)
    if s.get("derived_positions"):
        console.print(
            "positions: no embedding; layer 0 derives the learned table (position-share "
            "head writes 1/(t+1), position-code MLP interpolates), largest code error "
            f"{_num(s['derived_positions']['code_error'])}",
            soft_wrap=True,
        )
    if s.get("interference"):
        console.print("worst interference each head reads (its scores are scaled by it):")
        for i in s["interference"]:
            console.print(f"  - {_interference(i)}", soft_wrap=True)
    if s.get("codes"):
        t = _table("feature codes (features sharing dimensions)", "feature", "code", text=2)
        for name, code in s["codes"].items():
            t.add_row(name, " + ".join(d if w == 1 else f"{w:g} {d}" for d, w in code))
        console.print(t)


def _interference(i: dict[str, Any]) -> str:
    scale = 1 / (i["low"] - i["high"])
    rules = ", ".join(i.get("rules") or [])
    return (
        f"{i['head']} ({rules}): {i['reads']} {i['member']} reads {i['low']:g}, "
        f"{i['other']} reads {i['high']:g} (margin x {scale:g})"
    )


def search_table(rows: list[dict[str, Any]]) -> Table:
    """The shapes ``craft compile --smallest`` tried: fits or why not, parameters, bound."""
    t = _table("shapes searched", "shape", "d_head", "fits", "parameters", "max bound", text=1)
    for r in rows:
        bound = _num(r["bound"]) if r["bound"] is not None else r["why"]
        t.add_row(
            r["shape"], str(r["d_head"]), "yes" if r["fits"] else "no", f"{r['params']:,}", bound
        )
    return t


def eval_table(evaluation: dict[str, Any], bounds: dict[str, float]) -> Table:
    """Per-rule table of an evaluation's JSON (``Evaluation.to_json()``) and an overall row.

    Args:
        evaluation: ``{"rules": {name: stats}, "overall": stats}``.
        bounds: the model's stated max-KL bound per rule (empty: no bound column).
    """
    columns = ["rule", "n", "CE", "entropy", "excess (KL)", "max KL", "argmax acc"]
    t = _table("behaviour against the spec (nats per token)", *columns, *(["bound"] * bool(bounds)))
    rows = [*evaluation["rules"].items(), ("overall", evaluation["overall"])]
    for i, (name, r) in enumerate(rows):
        cells = [name, str(r["n"]), _num(r["ce"]), _num(r["entropy"]), _num(r["kl"])]
        cells += [_num(r["max_kl"]), f"{r['accuracy']:.3f}"]
        if bounds:
            cells.append(_num(bounds[name]) if name in bounds else "")
        t.add_row(*cells, end_section=i == len(rows) - 2)
    return t


def never_fired(evaluation: dict[str, Any], rule_names: tuple[str, ...]) -> list[str]:
    """Rules of the spec with no position in the evaluated sample."""
    return [name for name in rule_names if name not in evaluation["rules"]]


def over_bound(evaluation: dict[str, Any], bounds: dict[str, float]) -> list[str]:
    """Rules whose largest observed KL exceeds the model's stated bound."""
    return [
        name
        for name, r in evaluation["rules"].items()
        if name in bounds and r["max_kl"] > bounds[name]
    ]


def check_table(results) -> Table:
    """One row per claim: verdict, what it compares (which way it fails), how many
    distinct contexts it scored, the counterexample."""
    table = Table(title="claims", title_justify="left")
    for col in ("claim", "kind", "result", "compares", "distinct contexts", "counterexample"):
        table.add_column(col, justify="right" if col == "distinct contexts" else "left")
    for r in results:
        example = " ".join(r.counterexample) if r.counterexample is not None else ""
        table.add_row(
            r.name,
            r.kind,
            "pass" if r.passed else "FAIL",
            r.comparison(),
            str(r.examples),
            example or ("(BOS only)" if r.counterexample == [] else ""),
        )
    return table
