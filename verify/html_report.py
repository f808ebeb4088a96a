"""Self-contained, interactive HTML reports: ``craft eval --html`` and ``craft diff``'s
``report.html``.

One file, no network: the CSS, the figures (PNG as data URLs, drawn by
:mod:`verify.html_figures`) and circuitsvis' attention viewer (its bundled JavaScript,
inlined once) travel inside it. Sections:

* the models and the spec (name, sha256), the sampling;
* per-rule tables (and, for a diff, the per-component table);
* the figures (a diff: every compared circuit, crafted | trained on one colour scale;
  one model: its direct path with the vocabulary's categories);
* attention patterns on real prompts: per rule, the shortest of a few sampled prefixes
  that end where the rule fires (:func:`verify.patching.in_distribution`), every head
  of every layer in circuitsvis' ``AttentionHeads`` (hover a head to see it, click to
  lock it); a diff shows crafted and trained side by side on the same prompt.
  Tensor-family patterns are signed and unnormalised: each head is divided by its
  largest ``|value|`` and drawn on [-1, 1].

Shape glossary: L layers, H heads, T prompt positions (BOS first).
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from craft.models import run_with_cache
from craft.models.io import atomic_write
from craft.models.transformer import Transformer
from specs.model import Spec
from specs.truth import next_dist
from verify.html_figures import draw_direct_path, draw_panel, panel_heads
from verify.patching import in_distribution

if TYPE_CHECKING:
    from verify.behaviour import Evaluation
    from verify.diff import Diff

CANDIDATES = 6  # sampled prefixes per rule; the shortest is shown
SHORT = 10  # prompts are cut to at least this many tokens
CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
.bad{background:#fde2e2}.ok{background:#e3f6e3}
figure{margin:12px 0}figcaption{font-size:13px;color:#555}
img{max-width:100%}.pair{display:flex;gap:16px;flex-wrap:wrap}.pair>div{flex:1;min-width:380px}
.prompt{font-family:monospace;font-size:13px;background:#f7f7f7;padding:4px 8px}
h1{overflow-wrap:anywhere;font-size:26px}
h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
"""


@dataclass(frozen=True)
class Prompt:
    """A real context for a rule: ``tokens`` (after BOS) end where ``rule`` fires."""

    rule: str
    tokens: tuple[int, ...]


def _shortest_suffix(spec: Spec, ctx: list[int]) -> list[int]:
    """The shortest suffix of ``ctx`` (at least ``SHORT`` tokens) at whose end the same
    rule gives the same next-token distribution: a sampled text, cut to what matters."""
    p, rule = next_dist(spec, ctx)
    for start in range(max(0, len(ctx) - SHORT), 0, -1):
        q, other = next_dist(spec, ctx[start:])
        if other == rule and np.allclose(p, q, atol=1e-12):
            return ctx[start:]
    return ctx


def prompts(spec: Spec, seed: int = 0) -> tuple[Prompt, ...]:
    """One prompt per rule that fires in sampled data: the shortest of a few sampled
    prefixes, cut to its shortest suffix that still makes the rule fire alike."""
    out = []
    for rule in spec.rule_names():
        found = [_shortest_suffix(spec, c) for c in in_distribution(spec, rule, CANDIDATES, seed)
                 if c]  # fmt: skip
        if found:
            out.append(Prompt(rule, tuple(min(found, key=len))))
    return tuple(out)


def attention_props(runner: Transformer, spec: Spec, prompt: Prompt) -> dict[str, Any]:
    """circuitsvis ``AttentionHeads`` props: every head's pattern ``[L H, T, T]`` on
    ``prompt`` (``runner``: a private float64 copy, :func:`verify.diff.as_runner`)."""
    ids = torch.tensor([[spec.vocab.bos_id, *prompt.tokens]])
    _, cache = run_with_cache(runner, ids)
    cfg = runner.cfg
    pats = torch.cat([cache[f"blocks.{la}.attn.hook_pattern"][0] for la in range(cfg.n_layers)])
    props: dict[str, Any] = {"tokens": spec.vocab.decode(ids[0].tolist())}
    if cfg.family == "tensor":  # signed, unnormalised: scale each head to [-1, 1]
        pats = pats / pats.abs().amax(dim=(1, 2), keepdim=True).clamp_min(1e-30)
        props |= {"minValue": -1, "maxValue": 1, "negativeColor": "blue"}
    props["attention"] = np.round(pats.float().numpy(), 4).tolist()
    props["attentionHeadNames"] = [
        f"L{la}H{h}" for la in range(cfg.n_layers) for h in range(cfg.n_heads)
    ]
    return props


def _js() -> str:
    """circuitsvis' bundled viewer (defines ``CircuitsVis``), safe inside <script>."""
    import circuitsvis

    text = (Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js").read_text("utf-8")
    text = text.replace("//# sourceMappingURL=iife.js.map", "")
    return text.replace("</script", "<\\/script")


def _json(obj: Any) -> str:
    """JSON that cannot close the <script> it sits in."""
    return json.dumps(obj).replace("</", "<\\/")


@dataclass
class Page:
    """An HTML page being assembled: body parts and the attention views to render."""

    title: str
    parts: list[str]
    views: list[tuple[str, dict]]

    def add(self, text: str) -> None:
        self.parts.append(text)

    def view(self, props: dict, caption: str) -> str:
        """A placeholder div for one attention view (rendered by the page's script)."""
        vid = f"attn-{len(self.views)}"
        self.views.append((vid, props))
        return f'<div><h4>{html.escape(caption)}</h4><div class="attn" id="{vid}"></div></div>'

    def render(self) -> str:
        views = _json([{"id": v, "props": p} for v, p in self.views])
        script = (
            f"for (const v of {views}) "
            "CircuitsVis.render(v.id, CircuitsVis.AttentionHeads, v.props);"
        )
        return (
            f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>{''.join(self.parts)}"
            f"<script>{_js()}</script><script>{script}</script></body></html>"
        )


def table(header: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    """An HTML table; cells are escaped; ``classes`` marks whole rows (``bad``, ``ok``)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row))
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def figure(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    alt = html.escape(caption)
    img = f'<img src="data:image/png;base64,{data}" alt="{alt}">'
    return f"<figure>{img}<figcaption>{alt}</figcaption></figure>"


def _f(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def prompt_caption(spec: Spec, prompt: Prompt) -> str:
    """The prompt's text and the spec's most likely next token."""
    p = next_dist(spec, list(prompt.tokens))[0]
    best = spec.vocab.tokens[int(np.argmax(p))]
    text = " ".join(spec.vocab.decode(prompt.tokens))
    then = f"{html.escape(best)} (p = {p.max():.2f})"
    return f'<p class="prompt">{html.escape(text)} &rarr; {then}</p>'


def write_html(page: Page, path: str | Path) -> Path:
    """Write the page atomically; returns its path."""
    text = page.render()
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), "the report")
    return Path(path)


def _rule_rows(result: dict, bounds: dict) -> tuple[list[list[Any]], list[str]]:
    """Per-rule rows of an evaluation's JSON; a row over its stated bound is marked."""
    rows, classes = [], []
    every = [(rule, s, bounds.get(rule)) for rule, s in result["rules"].items()]
    for rule, s, bound in [*every, ("(every position)", result["overall"], None)]:
        rows.append([rule, s["n"], _f(s["ce"], 3), _f(s["entropy"], 3), _f(s["kl"]),
                     f"{s['max_kl']:.2e}", _f(s["accuracy"], 3),
                     "-" if bound is None else f"{bound:.1e}"])  # fmt: skip
        classes.append("bad" if bound is not None and s["max_kl"] > bound else "")
    return rows, classes


RULE_HEADER = ["rule", "positions", "CE", "entropy", "excess (KL)", "max KL", "accuracy",
               "bound"]  # fmt: skip


def _attention_section(page: Page, spec: Spec, runners: dict[str, Transformer], seed: int):
    """Per rule, one prompt; one attention view per model, side by side."""
    page.add("<h2>Attention on real prompts</h2><p>Per rule, the shortest of "
             f"{CANDIDATES} sampled prefixes that end where the rule fires, and the spec's "
             "most likely next token. Hover a head to see its pattern (query rows, key "
             "columns), click to lock it.</p>")  # fmt: skip
    for prompt in prompts(spec, seed):
        views = [page.view(attention_props(r, spec, prompt), f"{name}: {prompt.rule}")
                 for name, r in runners.items()]  # fmt: skip
        page.add(f"<h3>{html.escape(prompt.rule)}</h3>{prompt_caption(spec, prompt)}"
                 f"<div class=\"pair\">{''.join(views)}</div>")  # fmt: skip


def eval_page(model: Transformer, spec: Spec, evaluation: Evaluation, meta: dict) -> Page:
    """One model against its spec: ``meta`` holds ``model`` (path), ``n``, ``length``,
    ``seed`` as the command ran."""
    from verify.circuits import direct_path
    from verify.diff import as_runner

    page = Page(f"craft eval: {meta['model']} on spec {spec.name}", [], [])
    cfg = model.cfg
    page.add(f"<p>{cfg.family} family, {cfg.n_layers} layers x {cfg.n_heads} heads, d_model "
             f"{cfg.d_model}, {model.n_params():,} parameters. Spec {html.escape(spec.name)} "
             f"(sha256 {spec.sha256[:16]}...). {meta['n']} sampled sequences of "
             f"{meta['length']} tokens, seed {meta['seed']}; excess loss = KL(true || model) "
             "in nats; rows above their stated bound are red.</p>")  # fmt: skip
    rows, classes = _rule_rows(evaluation.to_json(), dict(model.meta.get("bounds") or {}))
    page.add("<h2>Behaviour per rule</h2>" + table(RULE_HEADER, rows, classes))
    n = min(len(spec.vocab.tokens), 60, cfg.n_out)
    dp = direct_path(model).centre("rows").rows(list(range(n))).columns(list(range(n)))
    png = draw_direct_path(dp.dense(), spec, "direct path W_E W_U (row-centred)")
    page.add("<h2>Figures</h2>" + figure(png, "direct path: how each input token alone "
                                         "moves each logit, categories separated"))  # fmt: skip
    _attention_section(page, spec, {"model": as_runner(model)}, meta["seed"])
    return page


def _component_rows(d: Diff) -> list[list[Any]]:
    from verify.report import carried, effect

    rows = []
    for c in d.components:
        comp = c.match.component
        heads = ", ".join(f"L{la}H{h}" for la, h in c.match.heads) or "-"
        rows.append([comp.name, comp.kind.value, f"L{comp.layer}H{comp.head}", heads,
                     f"{c.match.similarity:.3f}", effect(c), carried(c), c.verdict])  # fmt: skip
    return rows


def _behaviour_rows(d: Diff) -> list[list[Any]]:
    rows = []
    for rule, a in d.crafted.rules.items():
        b = d.trained.rules.get(rule, d.trained.overall)
        rows.append([rule, a.n, _f(a.kl), _f(b.kl), _f(a.accuracy, 3), _f(b.accuracy, 3),
                     _f(d.agreement.get(rule))])  # fmt: skip
    a, b = d.crafted.overall, d.trained.overall
    rows.append(["(every position)", a.n, _f(a.kl), _f(b.kl), _f(a.accuracy, 3),
                 _f(b.accuracy, 3), _f(d.agreement_overall)])  # fmt: skip
    return rows


def diff_page(d: Diff, crafted: Transformer, trained: Transformer, spec: Spec,
              names: tuple[str, str]) -> Page:  # fmt: skip
    """``craft diff``'s report: ``names`` are the crafted and trained files as given."""
    from verify.diff import as_runner

    page = Page(f"craft diff: {names[0]} vs {names[1]}", [], [])
    page.add(f"<p>Spec {html.escape(spec.name)} (sha256 {spec.sha256[:16]}...); {d.n_seqs} "
             f"sampled sequences of {d.length} tokens, seed {d.seed}. Excess loss = "
             "KL(true || model) in nats.</p>")  # fmt: skip
    header = ["component", "kind", "crafted head", "trained match", "similarity",
              "zero-ablation: crafted -> trained", "patching carried", "verdict"]  # fmt: skip
    verdicts = ["ok" if c.verdict == "found" else "bad" for c in d.components]
    page.add("<h2>Components</h2>" + table(header, _component_rows(d), verdicts))
    if d.not_compared:
        page.add(f"<p>Not compared (MLP components): {html.escape(', '.join(d.not_compared))}"
                 "</p>")  # fmt: skip
    header = ["rule", "positions", "excess crafted", "excess trained", "acc crafted",
              "acc trained", "KL(crafted || trained)"]  # fmt: skip
    page.add("<h2>Behaviour per rule</h2>" + table(header, _behaviour_rows(d)))
    page.add("<h2>Figures</h2><p>Each figure puts crafted and trained on one colour scale; "
             "a trained panel of several matched heads is their sum.</p>")  # fmt: skip
    runners = {"crafted": as_runner(crafted), "trained": as_runner(trained)}
    for panel in d.panels:
        png = draw_panel(panel, panel_heads(panel.title), spec)
        page.add(figure(png, panel.title))
    _attention_section(page, spec, runners, d.seed)
    return page


def write_eval_report(model: Transformer, spec: Spec, evaluation: Evaluation, args) -> Path:
    """``craft eval MODEL --spec SPEC --html OUT.html``: check the path, build, write.

    Raises:
        CraftError: OUT.html is the model or the spec file, or cannot be written.
    """
    from craft.paths import PathArg, refuse_overwrites

    refuse_overwrites(
        [PathArg("MODEL", args.model), PathArg("--spec", args.spec)],
        [PathArg("--html", args.html, "the report")],
    )
    length = spec.max_len if args.length is None else args.length
    meta = {"model": args.model, "n": args.n, "length": length, "seed": args.seed}
    return write_html(eval_page(model, spec, evaluation, meta), args.html)
