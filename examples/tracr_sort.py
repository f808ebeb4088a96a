"""Sorting with Tracr, in PyTorch: convert, catch a silent failure, fix it, look inside.

The story a researcher would tell:

1. Tracr's ``make_sort`` compiled for inputs up to 10 tokens converts into a
   standard-family PyTorch model in milliseconds (no Haiku) and agrees with
   ``rasp.evaluate`` on every Hypothesis-generated input.
2. Its sibling ``make_sort_freq`` (sort by frequency) compiled with Tracr's default
   settings is silently wrong on some inputs: its histogram is a SelectorWidth, whose
   discretising MLP (``mlp_exactness=100``) miscounts a token seen 8-10 times. The
   check (``verify.tracr_check``: the Hypothesis search ``craft check`` uses) finds it,
   Hypothesis shrinks it to a minimal failing input, and the message names the cause
   and the fix.
3. Recompiled with ``mlp_exactness=1000`` it passes.
4. One attention pattern of the sort head: each output position attends to the input
   position whose key ranks there (a permutation matrix).

(``make_sort`` itself is exact at max_len 10: its SelectorWidth counts at most 9
smaller keys, and the default MLP is only wrong from 10 up; at max_len 20 it fails too.)

Run: ``python examples/tracr_sort.py`` (writes ``examples/out/tracr_sort_attention.png``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from craft.models import run_with_cache  # noqa: E402
from craft.tracr import from_rasp  # noqa: E402
from craft.tracr.pipeline import compile_checked  # noqa: E402
from verify.tracr_check import check  # noqa: E402  (the Hypothesis search craft check uses)

MAX_LEN = 10
VOCAB = {1, 2, 3, 4}


def plot_sort_attention(model, tokens: list, path: Path) -> Path:
    """Heatmap of the last attention layer's first head on one input."""
    _, cache = run_with_cache(model.model, model.encode([tokens]))
    layer = model.model.cfg.n_layers - 1
    while layer > 0 and not model.model.blocks[layer].attn.W_O.abs().sum():
        layer -= 1  # the last block whose attention is not a zero-filled slot
    pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0, 0].numpy()
    labels = [str(t) for t in tokens]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    im = ax.imshow(pattern, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), ["BOS", *map(str, model.run(tokens)[1:])])
    ax.set_xlabel("key: input token")
    ax.set_ylabel("query: sorted output")
    ax.set_title(f"make_sort, layer {layer} attention (head 0)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(out_dir: Path | None = None, samples: int = 300) -> list[Path]:
    """Run the story; returns the figure paths."""
    from tracr.compiler import lib
    from tracr.rasp import rasp

    logging.getLogger("absl").setLevel(logging.ERROR)
    out_dir = out_dir or Path(__file__).resolve().parent / "out"

    sort = lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=MAX_LEN, min_key=1)
    model = from_rasp(sort, VOCAB, MAX_LEN)
    cfg = model.model.cfg
    print(
        f"make_sort -> {cfg.n_layers} layers, d_model {cfg.d_model}, "
        f"{model.model.n_params()} params, in {model.report['compile_seconds']:.3f} s"
    )
    print("  run:", model.run(["BOS", 3, 1, 4, 2, 2]))
    print("  check:", check(model, sort, VOCAB, samples=samples).summary())

    sort_freq = lib.make_sort_freq(max_seq_len=MAX_LEN)
    _, result = compile_checked(sort_freq, VOCAB, MAX_LEN, samples=samples, check=check)
    print("make_sort_freq, default mlp_exactness=100:")
    print("  check:", result.summary())

    fixed = from_rasp(sort_freq, VOCAB, MAX_LEN, mlp_exactness=1000)
    print("make_sort_freq, mlp_exactness=1000:")
    print("  check:", check(fixed, sort_freq, VOCAB, samples=samples).summary())

    tokens = ["BOS", 3, 1, 4, 2, 2, 4]
    path = plot_sort_attention(model, tokens, out_dir / "tracr_sort_attention.png")
    print(f"wrote {path}")
    return [path]


if __name__ == "__main__":
    main()
    sys.exit(0)
