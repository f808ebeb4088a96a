"""``craft diff``: did training find the crafted circuit? By behaviour, weights and ablation.

Shape glossary: B sequences, T columns (BOS at column 0), O logits, L layers, H heads,
D d_model.

:func:`diff` compares a crafted model (its ``meta["components"]`` say which head does
what) with a trained one on the same sampled tokens:

1. behaviour per rule of both models (:func:`verify.behaviour.evaluate`) and their
   agreement ``KL(crafted || trained)`` per rule;
2. the direct path's similarity, and per crafted attention component every trained
   head's circuit similarities and role scores (:mod:`verify.matching`);
3. the match set of each component (many-to-one);
4. the causal check: zero-ablate (and mean-ablate: replace each head's output by its
   mean over the batch at the same position) the matched trained heads all at once, and
   the crafted head, and report the per-rule change of excess loss;
5. a verdict per component: ``found`` (matched, and ablating the match hurts every rule
   that ablating the crafted head hurts), ``partly`` (matched, but the trained model does
   not rely on it for all of those rules), ``missing`` (no match).

A rule is *hurt* by the crafted ablation when its excess loss rises by at least
``HURT`` nats; the trained model *relies* on the match for it when its zero ablation
raises that rule's excess loss by at least ``max(HURT, RELY * crafted rise)``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from craft.models import Transformer, hooks
from specs.errors import CraftError
from specs.model import Spec
from specs.sample import sample
from specs.truth import truth
from verify.batched import kl, kl_between
from verify.behaviour import Evaluation, evaluate
from verify.circuits import direct_path
from verify.factored import ZERO_TOL, norm, similarity
from verify.matching import (
    Head,
    Match,
    RoleScores,
    components,
    match,
    raw_patterns,
    role_scores,
)
from verify.report import Panel, panels

HURT = 0.01  # nats: a rule is hurt by an ablation that raises its excess loss this much
RELY = 0.25  # fraction of the crafted rise the trained model's rise must reach
BATCH = 100  # sequences per forward pass
PATTERN_SEQS = 32  # sampled sequences whose attention patterns are compared


@dataclass(frozen=True)
class Ablation:
    """Per-rule excess-loss change (nats) when ``heads`` are ablated (all at once)."""

    heads: tuple[Head, ...]
    zero: dict[str, float]
    mean: dict[str, float]

    def to_json(self) -> dict:
        return {"heads": [list(h) for h in self.heads], "zero": self.zero, "mean": self.mean}


@dataclass(frozen=True)
class ComponentDiff:
    """One crafted component: its match, both ablations and the verdict."""

    match: Match
    crafted: Ablation
    trained: Ablation | None
    hurt: tuple[str, ...]  # rules the crafted ablation hurts
    relied: tuple[str, ...]  # of those, rules the trained ablation hurts too
    verdict: str

    def to_json(self) -> dict:
        return {
            "match": self.match.to_json(),
            "crafted_ablation": self.crafted.to_json(),
            "trained_ablation": None if self.trained is None else self.trained.to_json(),
            "hurt": list(self.hurt),
            "relied": list(self.relied),
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class Diff:
    """Everything ``craft diff`` reports; ``panels`` are the heatmaps (not in the JSON)."""

    spec: str
    n_seqs: int
    length: int
    seed: int
    crafted: Evaluation
    trained: Evaluation
    agreement: dict[str, float]  # rule (and "overall") -> mean KL(crafted || trained)
    direct: float | None  # None: the crafted direct path is constant (nothing to compare)
    roles: RoleScores  # trained model's heads
    components: tuple[ComponentDiff, ...]
    not_compared: tuple[str, ...]  # crafted components v1 does not diff (MLP sublayers)
    panels: tuple[Panel, ...] = field(default=(), repr=False)

    def to_json(self) -> dict:
        return {
            "spec": self.spec,
            "n_seqs": self.n_seqs,
            "length": self.length,
            "seed": self.seed,
            "behaviour": {
                "crafted": self.crafted.to_json(),
                "trained": self.trained.to_json(),
                "agreement_kl": self.agreement,
            },
            "direct_path_similarity": self.direct,
            "trained_roles": self.roles.to_json(),
            "components": [c.to_json() for c in self.components],
            "not_compared": list(self.not_compared),
            "summary": {c.match.component.name: c.verdict for c in self.components},
        }


def _runner(model: Transformer) -> Transformer:
    return copy.deepcopy(model).to(torch.float64).eval()


def _chunks(tokens: np.ndarray) -> Iterator[np.ndarray]:
    for lo in range(0, tokens.shape[0], BATCH):
        yield tokens[lo : lo + BATCH]


def _log_probs(runner: Transformer, chunk: np.ndarray, patch: dict[str, Callable]) -> np.ndarray:
    with torch.no_grad(), hooks(runner, patch):
        logits = runner(torch.from_numpy(chunk))  # [b, T, O]
    return torch.log_softmax(logits, -1).numpy()


def _per_rule(spec: Spec, values: np.ndarray, rule_ids: np.ndarray) -> dict[str, float]:
    out = {
        name: float(values[rule_ids == i].mean())
        for i, name in enumerate(spec.rule_names())
        if (rule_ids == i).any()
    }
    return out | {"overall": float(values.mean())}


def _excess(runner: Transformer, spec: Spec, tokens: np.ndarray, patch: dict) -> dict[str, float]:
    """Mean excess loss ``KL(p || q)`` per rule (and overall) under ``patch``."""
    values, ids = [], []
    for chunk in _chunks(tokens):
        p, rule_ids = truth(spec, chunk)
        values.append(kl(p, _log_probs(runner, chunk, patch)))
        ids.append(rule_ids)
    return _per_rule(spec, np.concatenate(values), np.concatenate(ids))


def _head_means(runner: Transformer, tokens: np.ndarray, layer: int) -> torch.Tensor:
    """Each head's output at each position averaged over the batch ``[T, H, D]``."""
    total: list[torch.Tensor] = []

    def add(_m, _i, out):
        total.append(out.sum(0))

    for chunk in _chunks(tokens):
        with torch.no_grad(), hooks(runner, {f"blocks.{layer}.attn.hook_result": add}):
            runner(torch.from_numpy(chunk))
    return torch.stack(total).sum(0) / tokens.shape[0]


def _ablate(heads: tuple[Head, ...], means: dict[int, torch.Tensor] | None) -> dict[str, Callable]:
    """Hooks replacing each head's output by 0 (``means`` None) or by its batch mean."""
    by_layer: dict[int, list[int]] = {}
    for layer, h in heads:
        by_layer.setdefault(layer, []).append(h)

    def hook(layer: int, hs: list[int]) -> Callable:
        def fn(_m, _i, out):
            out = out.clone()
            for h in hs:
                out[:, :, h] = 0 if means is None else means[layer][: out.shape[1], h]
            return out

        return fn

    return {f"blocks.{la}.attn.hook_result": hook(la, hs) for la, hs in by_layer.items()}


def ablation(
    runner: Transformer,
    spec: Spec,
    tokens: np.ndarray,
    heads: tuple[Head, ...],
    base: dict[str, float],
) -> Ablation:
    """Per-rule excess-loss change when ``heads`` are zero- and mean-ablated together."""
    means = {la: _head_means(runner, tokens, la) for la in {la for la, _ in heads}}
    zero = _excess(runner, spec, tokens, _ablate(heads, None))
    mean = _excess(runner, spec, tokens, _ablate(heads, means))
    return Ablation(
        heads, {r: zero[r] - base[r] for r in base}, {r: mean[r] - base[r] for r in base}
    )


def _agreement(a: Transformer, b: Transformer, spec: Spec, tokens: np.ndarray) -> dict[str, float]:
    values, ids = [], []
    for chunk in _chunks(tokens):
        values.append(kl_between(_log_probs(a, chunk, {}), _log_probs(b, chunk, {})))
        ids.append(truth(spec, chunk)[1])
    return _per_rule(spec, np.concatenate(values), np.concatenate(ids))


def _verdict(m: Match, crafted: Ablation, trained: Ablation | None) -> tuple[tuple, tuple, str]:
    hurt = tuple(r for r, d in crafted.zero.items() if r != "overall" and d >= HURT)
    if trained is None:
        return hurt, (), "missing"
    relied = tuple(r for r in hurt if trained.zero[r] >= max(HURT, RELY * crafted.zero[r]))
    return hurt, relied, "found" if len(relied) == len(hurt) else "partly"


def _direct(crafted: Transformer, trained: Transformer) -> float | None:
    """Row-centred similarity of the direct paths; None when the crafted one is constant."""
    mine = direct_path(crafted).centre("rows")
    if norm(mine) <= ZERO_TOL * mine.reference:
        return None
    return similarity(mine, direct_path(trained), "rows")


def _check(crafted: Transformer, trained: Transformer, spec: Spec) -> None:
    a, b = crafted.cfg, trained.cfg
    if (a.n_vocab, a.n_out) != (b.n_vocab, b.n_out) or a.n_out != len(spec.vocab):
        raise CraftError(
            f"the models read/predict {a.n_vocab}/{a.n_out} and {b.n_vocab}/{b.n_out} tokens; "
            f"spec {spec.name!r} has {len(spec.vocab)}",
            where="diff",
            fix="diff two models made for the same spec",
        )


def diff(
    crafted: Transformer, trained: Transformer, spec: Spec, *, n_seqs: int = 500, seed: int = 0
) -> Diff:
    """Compare a crafted model with a trained one (see the module docstring).

    Args:
        crafted: the compiled model; its ``meta["components"]`` name the heads to match.
        trained: the model to judge (any model of either family with the same vocabulary).
        spec: the spec both were made for (gives the ground truth and the rules).
        n_seqs: sequences sampled from the spec (behaviour and ablations).
        seed: sampling and probe seed.

    Returns:
        The :class:`Diff`.

    Raises:
        CraftError: models that do not fit the spec or each other, or bad arguments.
    """
    _check(crafted, trained, spec)
    if isinstance(n_seqs, bool) or not isinstance(n_seqs, int) or n_seqs < 1:
        raise CraftError(f"n_seqs is {n_seqs!r}", where="diff", fix="pass n_seqs >= 1")
    length = min(spec.max_len, crafted.cfg.n_ctx - 1, trained.cfg.n_ctx - 1)
    tokens, _ = sample(spec, n_seqs, length, seed)
    rc, rt = _runner(crafted), _runner(trained)
    comps = components(crafted)
    roles, own_roles = role_scores(rt, spec, comps, seed), role_scores(rc, spec, comps, seed)
    base_c, base_t = _excess(rc, spec, tokens, {}), _excess(rt, spec, tokens, {})
    results = []
    probe = tokens[:PATTERN_SEQS]
    pats = (raw_patterns(rc, probe), raw_patterns(rt, probe))
    for comp in comps:
        m = match(rc, rt, spec, comp, roles, own_roles, pats)
        abl_c = ablation(rc, spec, tokens, ((comp.layer, comp.head),), base_c)
        abl_t = ablation(rt, spec, tokens, m.heads, base_t) if m.found else None
        results.append(ComponentDiff(m, abl_c, abl_t, *_verdict(m, abl_c, abl_t)))
    others = tuple(c["name"] for c in crafted.meta.get("components", []) if "head" not in c)
    return Diff(
        spec=spec.name,
        n_seqs=n_seqs,
        length=length,
        seed=seed,
        crafted=evaluate(rc, spec, tokens),
        trained=evaluate(rt, spec, tokens),
        agreement=_agreement(rc, rt, spec, tokens),
        direct=_direct(rc, rt),
        roles=roles,
        components=tuple(results),
        not_compared=others,
        panels=tuple(panels(rc, rt, spec, [r.match for r in results])),
    )
