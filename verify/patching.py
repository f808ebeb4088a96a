"""Activation patching of a set of heads between clean and corrupted contexts, per rule.

Shape glossary: N pairs, W = 1 + context length (BOS at column 0), V vocabulary,
H heads, D d_model.

**Pairs.** For a rule R, :func:`pairs` takes in-distribution contexts where R fires
(prefixes of sequences sampled from the spec, so a trained model is judged on the data
it learned from) and corrupts each by swapping one token for another token of the
*same category*, at a position where the swap changes the true next-token distribution
(total variation at least ``MIN_TV``). Earlier tokens are tried first, from the end
(the previous token, an anchor in a window, the token after an earlier occurrence:
what a head moves), the current token last (changing it changes every path at once).
A context where no single same-category swap changes the answer is dropped. Clean and
corrupt contexts have the same length, so a head's output can move between them
position by position. A corruption tests the heads that move the swapped token:
swapping the follower of an earlier occurrence tests an induction head's values, not
the previous-token head that built its keys (its ablation shows that one).

**Metrics** (:func:`patch`), every loss against the *clean* truth ``p``, in nats::

    L_clean   = KL(p || model(clean))
    L_corrupt = KL(p || model(corrupt))                     gap = L_corrupt - L_clean
    corrupt->clean: L_cc = KL(p || model(clean, heads from corrupt))
    clean->corrupt: L_kc = KL(p || model(corrupt, heads from clean))

``carried = (L_cc - L_clean) / gap`` (the share of the rule's output the heads carry: 1
when corrupting only the heads does all the damage) and ``restored = (L_corrupt - L_kc)
/ gap`` (1 when the clean heads alone restore the clean answer). Both are ratios of
means over the pairs, so pairs with a tiny gap cannot blow them up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from craft.models import Transformer, hooks
from specs.errors import CraftError
from specs.model import Spec
from specs.sample import sample
from specs.truth import next_dist
from verify.batched import kl, model_logprobs, pad

MIN_TV = 0.5  # a corruption must move the true distribution at least this far (TV)
N_PAIRS = 32  # pairs per rule

Head = tuple[int, int]


@dataclass(frozen=True)
class RulePatch:
    """Patching figures for one rule (means over ``n`` pairs; losses in nats)."""

    n: int
    clean: float  # L_clean
    corrupt: float  # L_corrupt
    corrupt_to_clean: float  # L_cc - L_clean (>= 0 when the heads carry the rule)
    clean_to_corrupt: float  # L_kc - L_corrupt (<= 0 when the heads carry the rule)

    @property
    def gap(self) -> float:
        return self.corrupt - self.clean

    @property
    def carried(self) -> float | None:
        return self.corrupt_to_clean / self.gap if self.gap > 1e-9 else None

    @property
    def restored(self) -> float | None:
        return -self.clean_to_corrupt / self.gap if self.gap > 1e-9 else None

    def to_json(self) -> dict:
        return {
            "n": self.n,
            "clean": self.clean,
            "corrupt": self.corrupt,
            "corrupt_to_clean": self.corrupt_to_clean,
            "clean_to_corrupt": self.clean_to_corrupt,
            "carried": self.carried,
            "restored": self.restored,
        }


def _tv(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(p - q).sum())


def corrupt(spec: Spec, ctx: Sequence[int], rng: np.random.Generator) -> list[int] | None:
    """``ctx`` with one token swapped for a same-category token so that the true next
    distribution moves by at least ``MIN_TV``; None when no such swap exists."""
    clean = next_dist(spec, list(ctx))[0]
    for i in [*range(len(ctx) - 2, -1, -1), len(ctx) - 1]:
        members = spec.vocab.resolve(spec.vocab.category_of(spec.vocab.tokens[ctx[i]]))
        others = sorted(members - {ctx[i]})
        for t in rng.permutation(others) if others else ():
            other = list(ctx)
            other[i] = int(t)
            if _tv(clean, next_dist(spec, other)[0]) >= MIN_TV:
                return other
    return None


def in_distribution(spec: Spec, rule: str, n: int, seed: int = 0) -> list[list[int]]:
    """Up to ``n`` contexts where ``rule`` fires: prefixes of sampled sequences, at most
    one per sequence (batches of 64 sequences, at most 64 batches, for rare rules)."""
    want = spec.rule_names().index(rule)
    out: list[list[int]] = []
    rng = np.random.default_rng(seed)
    for k in range(64):
        tokens, rule_ids = sample(spec, 64, spec.max_len, seed * 1000 + k)
        for b in range(tokens.shape[0]):
            hits = np.flatnonzero(rule_ids[b] == want)
            if hits.size and len(out) < n:
                t = int(rng.choice(hits))
                out.append([int(x) for x in tokens[b, 1 : t + 1]])
        if len(out) >= n:
            break
    return out


def pairs(
    spec: Spec, rule: str, n: int = N_PAIRS, seed: int = 0
) -> tuple[list[list[int]], list[list[int]]]:
    """Up to ``n`` (clean, corrupt) context pairs for ``rule`` (see the module docstring)."""
    if rule not in spec.rule_names():
        raise CraftError(f"spec {spec.name!r} has no rule {rule!r}", fix="name one of its rules")
    rng = np.random.default_rng(seed)
    clean, bad = [], []
    for ctx in in_distribution(spec, rule, n, seed):
        other = corrupt(spec, ctx, rng)
        if other is not None:
            clean.append(list(ctx))
            bad.append(other)
    return clean, bad


def _outputs(model: Transformer, tokens: np.ndarray, layers: set[int]) -> dict[int, torch.Tensor]:
    """Every head's residual write ``[N, W, H, D]`` per layer in ``layers``."""
    seen: dict[int, torch.Tensor] = {}

    def keep(layer: int):
        def fn(_m, _i, out):
            seen[layer] = out.detach()

        return fn

    names = {f"blocks.{la}.attn.hook_result": keep(la) for la in layers}
    with torch.no_grad(), hooks(model, names):
        model(torch.from_numpy(tokens))
    return seen


def head_hooks(heads: Sequence[Head], replace: Callable) -> dict[str, Callable]:
    """Forward hooks on ``hook_result`` that overwrite the output of ``heads``.

    ``replace(layer, hs, out)`` returns the new ``out[:, :, hs]`` (``out`` is the layer's
    ``[N, W, H, D]`` head outputs); one hook per layer, whatever the number of heads.
    """
    by_layer: dict[int, list[int]] = {}
    for la, h in heads:
        by_layer.setdefault(la, []).append(h)

    def hook(layer: int, hs: list[int]) -> Callable:
        def fn(_m, _i, out):
            out = out.clone()
            out[:, :, hs] = replace(layer, hs, out)
            return out

        return fn

    return {f"blocks.{la}.attn.hook_result": hook(la, hs) for la, hs in by_layer.items()}


def _swap(heads: Sequence[Head], donor: dict[int, torch.Tensor]) -> dict[str, Callable]:
    """Hooks writing the donor run's output of ``heads`` into the receiving run."""
    return head_hooks(heads, lambda la, hs, out: donor[la][:, :, hs].to(out.dtype))


def patch(
    model: Transformer,
    spec: Spec,
    heads: Sequence[Head],
    clean: list[list[int]],
    bad: list[list[int]],
) -> RulePatch:
    """Patch ``heads`` (all at once) both ways between the pairs; see the module docstring."""
    if not clean:
        return RulePatch(0, 0.0, 0.0, 0.0, 0.0)
    p = np.stack([next_dist(spec, c)[0] for c in clean])
    tok_c, tok_k = pad(spec, clean)[0], pad(spec, bad)[0]
    layers = {la for la, _ in heads}
    out_c, out_k = _outputs(model, tok_c, layers), _outputs(model, tok_k, layers)
    loss = {
        "clean": kl(p, model_logprobs(model, spec, clean)),
        "corrupt": kl(p, model_logprobs(model, spec, bad)),
        "cc": kl(p, model_logprobs(model, spec, clean, _swap(heads, out_k))),
        "kc": kl(p, model_logprobs(model, spec, bad, _swap(heads, out_c))),
    }
    m = {k: float(v.mean()) for k, v in loss.items()}
    cc, kc = m["cc"] - m["clean"], m["kc"] - m["corrupt"]
    return RulePatch(len(clean), m["clean"], m["corrupt"], cc, kc)
