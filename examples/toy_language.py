"""Compile the toy language and read its circuits back out of the weights.

The story: ``specs/library/toy_language.yaml`` describes a small language as data
(trigrams, skip-bigrams, induction, bigram tables). The compiler turns it into a
two-layer transformer whose weights implement those rules, and every rule can be
seen in the weights directly:

1. The direct path ``W_E W_U`` *is* the bigram table: ``softmax(W_E W_U)`` row ``v``
   is the next-token distribution after ``v`` when no higher rule fires (the
   fallback's part-of-speech blocks show up as bands, the noun rows as 70/20/10).
2. The skip-bigram detector head of layer 0 has a QK circuit that factors into a
   token part (cue ``big`` scores high against anchor ``beach``: one bright cell per
   rule in ADJ x PLACE) and a position part (a band: the anchor stands 2..9 back).
3. Sampling from the spec and comparing the model's predictions with the exact
   distributions gives, per rule, a KL divergence far below the compiler's bound.

Run ``python examples/toy_language.py``; the figures land in ``examples/out/``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure  # no pyplot: PNGs render with Agg, no global state
from rich.console import Console
from rich.table import Table

from craft.compiler import Compiled, compile_spec
from craft.models import Transformer
from specs.load import library_path, load_spec
from specs.model import Vocab
from verify.behaviour import evaluate

OUT = Path(__file__).resolve().parent / "out"


def bigram_figure(model: Transformer, vocab: Vocab, path: Path) -> None:
    """Heatmap of ``softmax(W_E W_U)`` over the tokens, grouped by category."""
    n = len(vocab)
    w_e, w_u = model.embed.W_E.detach().double(), model.unembed.W_U.detach().double()
    probs = (w_e[:n] @ w_u).softmax(-1).numpy()  # [V, V]: the BOS row dropped
    fig = Figure(figsize=(11, 10))
    ax = fig.subplots()
    im = ax.imshow(probs, cmap="viridis", norm=PowerNorm(0.5, vmin=0, vmax=1))  # sqrt shows 0.05s
    ax.set_xticks(range(n), vocab.tokens, rotation=90, fontsize=7)
    ax.set_yticks(range(n), vocab.tokens, fontsize=7)
    edge = 0
    for cat, toks in vocab.categories:  # category blocks, labelled on the outer edges
        mid, edge = edge + len(toks) / 2 - 0.5, edge + len(toks)
        ax.axhline(edge - 0.5, color="white", lw=0.6)
        ax.axvline(edge - 0.5, color="white", lw=0.6)
        ax.text(n + 0.5, mid, cat, va="center", fontsize=8)
        ax.text(mid, -1.5, cat, ha="center", fontsize=8)
    ax.set_xlabel("next token x[t+1]")
    ax.set_ylabel("current token x[t]")
    ax.set_title("Direct path softmax(W_E W_U): the bigram table\n", fontsize=11)
    fig.colorbar(im, ax=ax, shrink=0.7, pad=0.08, label="p(next | current), square-root scale")
    fig.savefig(path, dpi=130, bbox_inches="tight")


def skip_figure(compiled: Compiled, vocab: Vocab, path: Path, n_pos: int = 20) -> None:
    """QK of the layer-0 skip-bigram head: cue x anchor tokens, and positions."""
    model = compiled.model
    heads = [c for s, c in compiled.placed if s == 0]  # layer-0 attention, in head order
    h = next(i for i, c in enumerate(heads) if c.name.startswith("skip"))
    attn, scale = model.blocks[0].attn, math.sqrt(model.cfg.d_head)
    w_e, w_pos = model.embed.W_E.detach(), model.pos_embed.W_pos.detach()
    w_q, w_k = attn.W_Q[h].detach(), attn.W_K[h].detach()  # [D, E]
    cues, anchors = dict(vocab.categories)["ADJ"], dict(vocab.categories)["PLACE"]
    q_tok = w_e[[vocab.index(t) for t in cues]] @ w_q
    k_tok = w_e[[vocab.index(t) for t in anchors]] @ w_k
    tok_scores = (q_tok @ k_tok.T / scale).numpy()  # [cue, anchor]
    pos = (w_pos[:n_pos] @ w_q) @ (w_pos[:n_pos] @ w_k).T / scale  # [query t, key s]
    pos = np.ma.masked_where(np.triu(np.ones((n_pos, n_pos)), 1) > 0, pos.numpy())
    fig = Figure(figsize=(13, 5.5))
    a1, a2 = fig.subplots(1, 2, width_ratios=[1, 1.4])
    im1 = a1.imshow(tok_scores, cmap="magma")
    a1.set_xticks(range(len(anchors)), anchors, rotation=45, ha="right")
    a1.set_yticks(range(len(cues)), cues)
    a1.set(xlabel="key token (anchor, PLACE)", ylabel="query token (cue, ADJ)")
    a1.set_title(f"token QK, head {heads[h].name} (L0H{h})")
    fig.colorbar(im1, ax=a1, shrink=0.8, label="score")
    cmap = colormaps["magma"].with_extremes(bad="0.85")
    im2 = a2.imshow(pos, cmap=cmap)
    a2.set_xticks(range(n_pos))
    a2.set_yticks(range(n_pos))
    a2.tick_params(labelsize=8)
    a2.set(xlabel="key position s", ylabel="query position t")
    a2.set_title("position QK: key 2..9 back from query (grey: masked)")
    fig.colorbar(im2, ax=a2, shrink=0.8, label="score")
    fig.suptitle("skip-bigram detector: score(t, s) = token part + position part")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main(out_dir: Path = OUT, n_seqs: int = 200) -> list[Path]:
    """Compile, draw both figures into ``out_dir``, print the per-rule evaluation."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = load_spec(library_path("toy_language"))
    compiled = compile_spec(spec, "standard")
    model = compiled.model
    cfg = model.cfg
    print(f"{spec.name}: {cfg.n_layers} layers, {cfg.n_heads} heads, d_model {cfg.d_model}")
    paths = [out_dir / "toy_bigram_table.png", out_dir / "toy_skip_bigram_qk.png"]
    bigram_figure(model, spec.vocab, paths[0])
    skip_figure(compiled, spec.vocab, paths[1])
    ev = evaluate(model, spec, n_seqs=n_seqs)
    table = Table(title=f"per-rule behaviour on {n_seqs} sampled sequences (nats)")
    for col in ("rule", "n", "KL", "max KL", "bound", "CE", "entropy", "accuracy"):
        table.add_column(col, justify="left" if col == "rule" else "right", no_wrap=True)
    bound = compiled.constants.bound
    for name, r in ev.rules.items():
        b = f"{bound[name]:.1e}" if name in bound else "-"
        cells = (f"{r.kl:.1e}", f"{r.max_kl:.1e}", b, f"{r.ce:.3f}", f"{r.entropy:.3f}")
        table.add_row(name, str(r.n), *cells, f"{r.accuracy:.3f}")
    Console(width=120).print(table)
    for p in paths:
        print(f"wrote {p}")
    return paths


if __name__ == "__main__":
    main()
