"""``craft diff``: did training find the crafted circuit? By behaviour, weights and ablation.

Shape glossary: B sequences, T columns (BOS at column 0), O logits, L layers, H heads,
D d_model.

:func:`diff` compares a crafted model (its component records,
:func:`craft.models.component_records`, say which head does what) with a trained one on
the same sampled tokens:

1. behaviour per rule of both models (:func:`verify.behaviour.evaluate`) and their
   agreement ``KL(crafted || trained)`` per rule;
2. the direct path's similarity, and per crafted attention component every trained
   head's circuit similarities and role scores (:mod:`verify.matching`);
3. the match set of each component (many-to-one);
4. the causal check: zero-ablate (and mean-ablate: replace each head's output by its
   mean over the batch at the same position) the matched trained heads all at once, and
   the crafted head, and report the per-rule change of excess loss; then patch them
   between clean and same-category-corrupted contexts, both directions, on the
   component's rules (:mod:`verify.patching`: the share of the rule's output the
   heads carry). Behaviour and agreement run in float64, ablations and patching
   (effects of 0.01 nats and more) in float32, twice as fast (float64 for a model that
   must run in it, :func:`fast`);
5. a verdict per component: ``found`` (matched, and ablating the match hurts every rule
   that ablating the crafted head hurts), ``partly`` (matched, but the trained model does
   not rely on it for all of those rules), ``diffuse`` (the match set holds two or more
   heads and more than ``DIFFUSE`` of the trained model's heads: ablating or patching
   most of a model breaks most rules, so neither says where the function lives),
   ``missing`` (no match), ``idle`` (ablating the crafted head hurts no rule on these
   sequences, e.g. a bracket model's minimum head on well-nested data: there is nothing
   to test the match against, so a match, if any, is by weights alone).

A rule is *hurt* by the crafted ablation when its excess loss rises by at least
``HURT`` nats. The trained model *relies* on the match for it when zero-ablating the
match raises that rule's excess loss by at least ``RELY`` nats (an absolute bar: a
crafted model's rises are set by its margins, tens of nats, and say nothing about what
a trained model should lose), or when patching shows the match carries at least
``CARRY`` of the rule's output (a share, so it is free of scale).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from craft.models import ComponentRecord, Transformer, component_records, hooks
from specs.errors import CraftError
from specs.model import Spec
from specs.sample import sample
from specs.truth import truth
from verify.batched import kl, kl_between
from verify.behaviour import Evaluation, check_finite, evaluate
from verify.circuits import Composition, composition, direct_path
from verify.factored import ZERO_TOL, norm, similarity
from verify.matching import Head, Match, RoleScores, match_all
from verify.patching import RulePatch, head_hooks, pairs, patch
from verify.report import Panel, panels

HURT = 0.01  # nats: a rule is hurt by an ablation that raises its excess loss this much
RELY = 0.1  # nats: the trained model relies on its match for a rule when zero-ablating...
CARRY = 0.5  # ...the match costs it this much, or patching shows the match carries this share
BATCH = 100  # sequences per forward pass, at most...
CELLS = 8_000_000  # ...and at most this many logits (64 MB in float64) per pass
PATCH_RULES = 4  # rules patched for a component that names none (the most hurt ones)
DIFFUSE = 0.5  # a match set holding more than this share of all heads is no localisation


@dataclass(frozen=True)
class PerRule:
    """A figure per rule, and over every position: kept apart, so a rule may be named
    anything (``overall`` included) without taking the overall figure's place."""

    rules: dict[str, float]
    overall: float

    def to_json(self) -> dict:
        return {"rules": self.rules, "overall": self.overall}


@dataclass(frozen=True)
class Ablation:
    """Per-rule excess-loss change (nats) when ``heads`` are ablated (all at once);
    ``zero_overall``/``mean_overall``: the change over every position."""

    heads: tuple[Head, ...]
    zero: dict[str, float]
    mean: dict[str, float]
    zero_overall: float = 0.0
    mean_overall: float = 0.0

    def to_json(self) -> dict:
        return {
            "heads": [list(h) for h in self.heads],
            "zero": self.zero,
            "mean": self.mean,
            "zero_overall": self.zero_overall,
            "mean_overall": self.mean_overall,
        }


@dataclass(frozen=True)
class ComponentDiff:
    """One crafted component: its match, both ablations, patching and the verdict."""

    match: Match
    crafted: Ablation
    trained: Ablation | None
    hurt: tuple[str, ...]  # rules the crafted ablation hurts
    relied: tuple[str, ...]  # of those, rules the trained ablation hurts too
    verdict: str
    # rule -> (crafted head patched, trained match set patched or None when missing)
    patching: dict[str, tuple[RulePatch, RulePatch | None]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "match": self.match.to_json(),
            "crafted_ablation": self.crafted.to_json(),
            "trained_ablation": None if self.trained is None else self.trained.to_json(),
            "patching": {
                rule: {"crafted": a.to_json(), "trained": None if b is None else b.to_json()}
                for rule, (a, b) in self.patching.items()
            },
            "hurt": list(self.hurt),
            "relied": list(self.relied),
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class CompositionRow:
    """How an earlier component feeds a later one: crafted heads, and the strongest pair
    of their matched trained heads (per score: Q, K and V composition separately)."""

    src: str
    dst: str
    crafted: Composition
    trained: Composition | None  # None: either component is missing

    def to_json(self) -> dict:
        return {
            "src": self.src,
            "dst": self.dst,
            "crafted": asdict(self.crafted),
            "trained": None if self.trained is None else asdict(self.trained),
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
    agreement: dict[str, float]  # rule -> mean KL(crafted || trained)
    direct: float | None  # None: the crafted direct path is constant (nothing to compare)
    roles: RoleScores  # trained model's heads
    components: tuple[ComponentDiff, ...]
    not_compared: tuple[str, ...]  # crafted components v1 does not diff (MLP sublayers)
    composition: tuple[CompositionRow, ...] = ()  # crafted component pairs across layers
    agreement_overall: float = 0.0  # mean KL(crafted || trained) over every position
    trained_composition: dict[tuple[Head, Head], Composition] = field(default_factory=dict)
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
                "agreement_kl_overall": self.agreement_overall,
            },
            "direct_path_similarity": self.direct,
            "trained_roles": self.roles.to_json(),
            "components": [c.to_json() for c in self.components],
            "not_compared": list(self.not_compared),
            "composition": [r.to_json() for r in self.composition],
            "trained_composition": [
                {"src": list(a), "dst": list(b), **asdict(c)}
                for (a, b), c in self.trained_composition.items()
            ],
            "summary": {c.match.component.name: c.verdict for c in self.components},
        }


def as_runner(model: Transformer, dtype: torch.dtype = torch.float64) -> Transformer:
    """A private copy in ``dtype`` and eval mode (the caller's model is left alone)."""
    return copy.deepcopy(model).to(dtype).eval()


def fast(model: Transformer) -> torch.dtype:
    """The dtype of the ablation and patching runs: float32, unless the model must run
    in float64 (tensor-family induction past the float32 limit: ``meta["dtype"]``, its
    weights float64), where float32 would overflow its logits."""
    wide = model.meta.get("dtype") == "float64" or model.embed.W_E.dtype == torch.float64
    return torch.float64 if wide else torch.float32


def batch_size(n_out: int, width: int) -> int:
    """Sequences per forward pass: ``BATCH``, fewer for a large vocabulary (``CELLS``)."""
    return max(1, min(BATCH, CELLS // max(1, n_out * width)))


def _chunks(tokens: np.ndarray, n_out: int = 0) -> Iterator[np.ndarray]:
    step = batch_size(n_out, tokens.shape[1])
    for lo in range(0, tokens.shape[0], step):
        yield tokens[lo : lo + step]


def _log_probs(runner: Transformer, chunk: np.ndarray, patch: dict[str, Callable]) -> np.ndarray:
    with torch.no_grad(), hooks(runner, patch):
        logits = runner(torch.from_numpy(chunk))  # [b, T, O]
    return torch.log_softmax(logits.double(), -1).numpy()


def _per_rule(spec: Spec, values: np.ndarray, rule_ids: np.ndarray) -> PerRule:
    out = {
        name: float(values[rule_ids == i].mean())
        for i, name in enumerate(spec.rule_names())
        if (rule_ids == i).any()
    }
    return PerRule(out, float(values.mean()))


def rule_excess(runner: Transformer, spec: Spec, tokens: np.ndarray, patch: dict) -> PerRule:
    """Mean excess loss ``KL(p || q)`` per rule, and overall, under ``patch``."""
    values, ids = [], []
    for chunk in _chunks(tokens, len(spec.vocab)):
        p, rule_ids = truth(spec, chunk)
        values.append(kl(p, _log_probs(runner, chunk, patch)))
        ids.append(rule_ids)
    return _per_rule(spec, np.concatenate(values), np.concatenate(ids))


def _head_means(runner: Transformer, tokens: np.ndarray, layer: int) -> torch.Tensor:
    """Each head's output at each position averaged over the batch ``[T, H, D]``."""
    total: list[torch.Tensor] = []

    def add(_m, _i, out):
        total.append(out.sum(0))

    for chunk in _chunks(tokens, runner.cfg.n_out):
        with torch.no_grad(), hooks(runner, {f"blocks.{layer}.attn.hook_result": add}):
            runner(torch.from_numpy(chunk))
    return torch.stack(total).sum(0) / tokens.shape[0]


def _ablate(heads: tuple[Head, ...], means: dict[int, torch.Tensor] | None) -> dict[str, Callable]:
    """Hooks replacing each head's output by 0 (``means`` None) or by its batch mean."""

    def replace(layer: int, hs: list[int], out: torch.Tensor) -> torch.Tensor | float:
        return 0.0 if means is None else means[layer][: out.shape[1], hs].to(out.dtype)

    return head_hooks(heads, replace)


def ablation(
    runner: Transformer,
    spec: Spec,
    tokens: np.ndarray,
    heads: tuple[Head, ...],
    base: PerRule,
) -> Ablation:
    """Per-rule excess-loss change when ``heads`` are zero- and mean-ablated together."""
    means = {la: _head_means(runner, tokens, la) for la in {la for la, _ in heads}}
    zero = rule_excess(runner, spec, tokens, _ablate(heads, None))
    mean = rule_excess(runner, spec, tokens, _ablate(heads, means))
    return Ablation(
        heads,
        {r: zero.rules[r] - b for r, b in base.rules.items()},
        {r: mean.rules[r] - b for r, b in base.rules.items()},
        zero.overall - base.overall,
        mean.overall - base.overall,
    )


def _patching(
    rc: Transformer,
    rt: Transformer,
    spec: Spec,
    comp: ComponentRecord,
    m: Match,
    abl: Ablation,
    cache: dict[str, tuple[list, list]],
    seed: int,
) -> dict[str, tuple[RulePatch, RulePatch | None]]:
    """Patch the crafted head and the trained match set on the component's rules (those
    it names, else the ``PATCH_RULES`` its ablation hurts most), same clean/corrupt pairs."""
    hurt = [r for r, d in abl.zero.items() if d >= HURT]
    rules = list(comp.rules) or sorted(hurt, key=lambda r: -abl.zero[r])[:PATCH_RULES]
    out = {}
    for rule in rules:
        if rule not in cache:
            cache[rule] = pairs(spec, rule, seed=seed)
        clean, bad = cache[rule]
        if not clean:
            continue
        mine = patch(rc, spec, [(comp.layer, comp.head)], clean, bad)
        out[rule] = (mine, patch(rt, spec, list(m.heads), clean, bad) if m.found else None)
    return out


def _agreement(a: Transformer, b: Transformer, spec: Spec, tokens: np.ndarray) -> PerRule:
    values, ids = [], []
    for chunk in _chunks(tokens, len(spec.vocab)):
        values.append(kl_between(_log_probs(a, chunk, {}), _log_probs(b, chunk, {})))
        ids.append(truth(spec, chunk)[1])
    return _per_rule(spec, np.concatenate(values), np.concatenate(ids))


def _verdict(
    crafted: Ablation,
    trained: Ablation | None,
    patched: dict[str, tuple[RulePatch, RulePatch | None]],
    n_heads: int,
) -> tuple[tuple, tuple, str]:
    """(rules the crafted ablation hurts, those the trained model relies on the match
    for, the verdict); ``n_heads``: all heads of the trained model."""
    hurt = tuple(r for r, d in crafted.zero.items() if d >= HURT)
    if not hurt:
        return hurt, (), "idle"
    if trained is None:
        return hurt, (), "missing"
    if len(trained.heads) >= 2 and len(trained.heads) > DIFFUSE * n_heads:
        return hurt, (), "diffuse"

    def relies(rule: str) -> bool:
        theirs = patched.get(rule, (None, None))[1]
        carried = theirs.carried if theirs is not None else None
        return trained.zero[rule] >= RELY or (carried is not None and carried >= CARRY)

    relied = tuple(r for r in hurt if relies(r))
    return hurt, relied, "found" if len(relied) == len(hurt) else "partly"


def all_compositions(model: Transformer) -> dict[tuple[Head, Head], Composition]:
    """Q, K and V composition of every head into every head of a later layer."""
    heads = [(la, h) for la in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    return {(a, b): composition(model, a, b) for a in heads for b in heads if a[0] < b[0]}


def _strongest(scores: list[Composition]) -> Composition | None:
    if not scores:
        return None
    return Composition(*(max(getattr(c, k) for c in scores) for k in ("q", "k", "v")))


def _compositions(
    rc: Transformer, results: list[ComponentDiff], trained: dict[tuple[Head, Head], Composition]
) -> tuple[CompositionRow, ...]:
    rows = []
    for a in results:
        for b in results:
            ca, cb = a.match.component, b.match.component
            if ca.layer >= cb.layer:
                continue
            pairs_ = [trained[(x, y)] for x in a.match.heads for y in b.match.heads if x[0] < y[0]]
            mine = composition(rc, (ca.layer, ca.head), (cb.layer, cb.head))
            found = a.match.found and b.match.found
            rows.append(
                CompositionRow(ca.name, cb.name, mine, _strongest(pairs_) if found else None)
            )
    return tuple(rows)


def _direct(crafted: Transformer, trained: Transformer) -> float | None:
    """Row-centred similarity of the direct paths; None when the crafted one is constant."""
    mine = direct_path(crafted).centre("rows")
    if norm(mine) <= ZERO_TOL * mine.reference:
        return None
    return similarity(mine, direct_path(trained), "rows")


def check_fit(
    crafted: Transformer,
    trained: Transformer,
    spec: Spec,
    names: tuple[str, str] = ("the crafted model", "the trained model"),
) -> None:
    """Raise CraftError unless both models read and predict the spec's vocabulary, read
    contexts of its max_len, and have finite weights (a NaN model has no circuits to
    compare). ``names``: what an error calls each model (its file)."""
    a, b = crafted.cfg, trained.cfg
    if (a.n_vocab, a.n_out) != (b.n_vocab, b.n_out) or a.n_out != len(spec.vocab):
        raise CraftError(
            f"the models read/predict {a.n_vocab}/{a.n_out} and {b.n_vocab}/{b.n_out} tokens; "
            f"spec {spec.name!r} has {len(spec.vocab)}",
            where="diff",
            fix="diff two models made for the same spec",
        )
    for model, name in zip((crafted, trained), names, strict=True):
        check_finite(model, where=f"diff: {name}")
        if model.cfg.n_ctx < spec.max_len + 1:  # role scores run contexts of max_len tokens
            raise CraftError(
                f"the model reads {model.cfg.n_ctx} positions, but contexts of spec "
                f"{spec.name!r} take up to {spec.max_len + 1} (max_len and BOS)",
                where=f"diff: {name}",
                fix="diff models made for this spec",
            )


def diff(
    crafted: Transformer, trained: Transformer, spec: Spec, *, n_seqs: int = 500, seed: int = 0
) -> Diff:
    """Compare a crafted model with a trained one (see the module docstring).

    Args:
        crafted: the compiled model; its component records name the heads to match.
        trained: the model to judge (any model of either family with the same vocabulary).
        spec: the spec both were made for (gives the ground truth and the rules).
        n_seqs: sequences sampled from the spec (behaviour and ablations).
        seed: sampling and probe seed.

    Returns:
        The :class:`Diff`.

    Raises:
        CraftError: models that do not fit the spec or each other, or bad arguments.
    """
    check_fit(crafted, trained, spec)
    if isinstance(n_seqs, bool) or not isinstance(n_seqs, int) or n_seqs < 1:
        raise CraftError(f"n_seqs is {n_seqs!r}", where="diff", fix="pass n_seqs >= 1")
    length = min(spec.max_len, crafted.cfg.n_ctx - 1, trained.cfg.n_ctx - 1)
    tokens, _ = sample(spec, n_seqs, length, seed)
    rc, rt = as_runner(crafted), as_runner(trained)
    fc, ft = as_runner(crafted, fast(crafted)), as_runner(trained, fast(trained))  # causal runs
    roles, matches = match_all(rc, rt, spec, tokens, seed)
    if matches:  # the ablations' baselines (float32, like the ablated runs)
        base_c, base_t = rule_excess(fc, spec, tokens, {}), rule_excess(ft, spec, tokens, {})
    results = []
    cache: dict[str, tuple[list, list]] = {}
    for m in matches:
        comp = m.component
        abl_c = ablation(fc, spec, tokens, ((comp.layer, comp.head),), base_c)
        abl_t = ablation(ft, spec, tokens, m.heads, base_t) if m.found else None
        patched = _patching(fc, ft, spec, comp, m, abl_c, cache, seed)
        n_heads = trained.cfg.n_layers * trained.cfg.n_heads
        hurt, relied, verdict = _verdict(abl_c, abl_t, patched, n_heads)
        results.append(ComponentDiff(m, abl_c, abl_t, hurt, relied, verdict, patched))
    others = tuple(r.name for r in component_records(crafted) if r.sublayer == "mlp")
    agreement = _agreement(rc, rt, spec, tokens)
    trained_comp = all_compositions(rt)
    return Diff(
        spec=spec.name,
        n_seqs=n_seqs,
        length=length,
        seed=seed,
        crafted=evaluate(rc, spec, tokens, batch=batch_size(len(spec.vocab), length + 1)),
        trained=evaluate(rt, spec, tokens, batch=batch_size(len(spec.vocab), length + 1)),
        agreement=agreement.rules,
        agreement_overall=agreement.overall,
        direct=_direct(rc, rt),
        roles=roles,
        components=tuple(results),
        not_compared=others,
        composition=_compositions(rc, results, trained_comp),
        trained_composition=trained_comp,
        panels=tuple(panels(rc, rt, spec, [r.match for r in results])),
    )
