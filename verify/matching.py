"""Match a crafted model's attention components to the trained heads that implement them.

Shape glossary: L layers, H heads (of the trained model), V input tokens, O logits,
P positions.

For each crafted attention component (a :class:`craft.models.ComponentRecord` with a
head index):

1. **Circuits compared.** Of the crafted head's token QK, position QK (only when both
   models have learned positions) and OV, the *relevant* ones are those carrying at least
   ``RELEVANT`` (1%) of the head's largest relative norm ``||C|| / C.reference``: a
   previous-token head is judged by its position QK, an induction head by its OV (its QK
   reads a previous-token subspace, not the embeddings). A head whose circuits are all
   zero (the tensor family builds its patterns from products of token and position
   terms) is judged by its role score alone ("role" basis).
   Roles (attention behaviour, :mod:`verify.head_scores`): previous-token for
   ``previous-token``; for ``induction`` the smaller of prefix matching on the rule's
   tokens and the copying score (an induction head must do both), skip-bigram
   (attention from a cue to the anchors in its window) for ``skip-detector``; for
   ``trigram-head`` and ``readout-head`` the condition score (how much attention from a
   trigram's last token to the pair switches when the rule holds or not); any other
   component (one whose rules include no trigram) is judged by the cosine of its raw
   attention patterns with the trained head's on the same sampled tokens.
2. **Per-head similarity.** For every trained head: the cosine of each relevant circuit
   with the crafted one (:func:`verify.factored.similarity`, row-centred for OV and for
   softmax QK), averaged over the relevant circuits.
3. **Match set, many-to-one.** Two kinds of evidence put a head in the set. *Role*:
   every head whose role score is at least ``MIN_SCORE`` and at least ``HALF`` of the
   best head's joins (a trained copying head is a poor cosine match for a crafted
   copier whose OV is exactly diagonal, yet plainly does the job). *Weights*: then,
   best first, each head whose similarity is positive and at least ``HALF`` of the
   best joins only if the set's *summed* circuit (heads add their writes, so circuits
   add) is more similar to the crafted circuit than without it (by ``GAIN``). The
   set's similarity is that of the summed circuit. A component with no role-qualified
   head and a set similarity below ``MIN_SCORE`` is missing. Whether the trained model
   *relies* on the set is the causal check's question (:mod:`verify.diff`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from craft.models.components import ComponentKind, ComponentRecord, component_records
from craft.models.hooks import hooks
from craft.models.transformer import Transformer
from specs.model import Spec
from verify import kinds
from verify.circuits import copying_score, ov, qk_positions, qk_tokens
from verify.factored import ZERO_TOL, Factored, Matrix, norm, similarity
from verify.head_scores import (
    condition_scores,
    prefix_matching_scores,
    previous_token_scores,
    skip_bigram_scores,
)

RELEVANT = 0.01  # a circuit counts when its relative norm is >= 1% of the head's largest
HALF = 0.5  # candidates: at least half of the best similarity or role score
MIN_SCORE = 0.3  # a match set needs at least this similarity (role basis: role score)
PATTERN_SEQS = 32  # sampled sequences whose attention patterns are compared
GAIN = 1e-3  # a head joins a set only if it raises the set's similarity by more than this
CIRCUITS = ("qk_tokens", "qk_positions", "ov")
# named roles; other kinds are judged by the similarity of their attention patterns
ROLE_OF_KIND = {
    ComponentKind.PREVIOUS_TOKEN: "previous_token",
    ComponentKind.INDUCTION: "induction",
    ComponentKind.SKIP_DETECTOR: "skip_bigram",
    ComponentKind.TRIGRAM_HEAD: "condition",
    ComponentKind.READOUT_HEAD: "condition",
}

CONDITION_KINDS = (ComponentKind.TRIGRAM_HEAD, ComponentKind.READOUT_HEAD)
Head = tuple[int, int]


@dataclass(frozen=True)
class HeadScore:
    """How one trained head compares with a component."""

    head: Head  # (layer, head) in the trained model
    circuits: dict[str, float]  # similarity per compared circuit kind
    similarity: float  # mean of circuits (the role score on the role basis)
    role: float  # the component's role score for this head

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Match:
    """A component's match set in the trained model."""

    component: ComponentRecord  # an attention record (head not None)
    basis: tuple[str, ...]  # circuit kinds compared (empty: judged by the role score)
    role: str  # previous_token, prefix_matching or pattern
    crafted_role: float | None  # the crafted head's own named role score
    scores: tuple[HeadScore, ...]  # every trained head, best first
    heads: tuple[Head, ...]  # the match set (empty: missing)
    similarity: float  # of the summed circuit (role basis: best role score)
    tokens: tuple[int, ...] = field(default=())  # ids the rules mention (heatmaps)

    @property
    def found(self) -> bool:
        return bool(self.heads)

    def to_json(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("tokens", "component")}
        return {"component": self.component.to_json(), **out}


@dataclass(frozen=True)
class RoleScores:
    """Role scores of every head of a model, each ``[L, H]``; prefix matching per rule."""

    previous_token: np.ndarray
    copying: np.ndarray
    prefix_matching: dict[str, np.ndarray]  # induction rule -> [L, H]
    skip_bigram: dict[str, np.ndarray] = field(default_factory=dict)  # detector -> [L, H]
    condition: dict[str, np.ndarray] = field(default_factory=dict)  # trigram/readout head

    def to_json(self) -> dict:
        return {
            "previous_token": self.previous_token.tolist(),
            "copying": self.copying.tolist(),
            "prefix_matching": {k: v.tolist() for k, v in self.prefix_matching.items()},
            "skip_bigram": {k: v.tolist() for k, v in self.skip_bigram.items()},
            "condition": {k: v.tolist() for k, v in self.condition.items()},
        }


def components(model: Transformer) -> list[ComponentRecord]:
    """The attention components recorded by the compiler (none for trained models)."""
    return [r for r in component_records(model) if r.head is not None]


def rule_tokens(spec: Spec, rules: tuple[str, ...]) -> tuple[int, ...]:
    """Token ids a component's rules mention (anchors, cues, answers, induction tokens)."""
    ids: set[int] = set()
    for rule in spec.rules:
        if rule.name not in rules:
            continue
        ids |= kinds.of(rule).tokens(rule)
    return tuple(sorted(ids))


def role_scores(
    model: Transformer, spec: Spec, comps: list[ComponentRecord], seed: int = 0
) -> RoleScores:
    """Previous-token, copying, prefix-matching (per induction rule) and skip-bigram (per
    detector component, over its rules) scores of every head."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    copying = [[copying_score(model, la, h) for h in range(n_heads)] for la in range(n_layers)]
    prefix = {}
    for c in (c for c in comps if c.kind == ComponentKind.INDUCTION):
        for rule, on in ((r, list(rule_tokens(spec, (r,)))) for r in c.rules):
            if len(on) >= 2:
                prefix[rule] = prefix_matching_scores(model, on=on, tokens=on, seed=seed)
    skip = {
        c.name: skip_bigram_scores(model, spec, list(c.rules), seed=seed)
        for c in comps
        if c.kind == ComponentKind.SKIP_DETECTOR and c.rules
    }
    cond = {
        c.name: condition_scores(model, spec, trigrams, seed=seed)
        for c in comps
        if c.kind in CONDITION_KINDS and (trigrams := _trigrams(spec, c.rules))
    }
    copies = np.array(copying).reshape(n_layers, n_heads)
    return RoleScores(previous_token_scores(model, seed=seed), copies, prefix, skip, cond)


def _trigrams(spec: Spec, rules: tuple[str, ...]) -> list[str]:
    return [r.name for r in spec.rules if r.name in rules and kinds.of(r).condition_scored]


def role_of(component: ComponentRecord, roles: RoleScores) -> np.ndarray | None:
    """The ``[L, H]`` role score that judges ``component``, or None (pattern similarity)."""
    if component.kind == ComponentKind.PREVIOUS_TOKEN:
        return roles.previous_token
    if component.kind == ComponentKind.SKIP_DETECTOR:
        return roles.skip_bigram.get(component.name)
    if component.kind in CONDITION_KINDS:
        return roles.condition.get(component.name)
    if component.kind != ComponentKind.INDUCTION:
        return None
    hits = [roles.prefix_matching[r] for r in component.rules if r in roles.prefix_matching]
    if not hits:
        return None
    return np.minimum(hits[0], np.maximum(roles.copying, 0.0))  # matches prefixes AND copies


@torch.no_grad()
def raw_patterns(model: Transformer, tokens: np.ndarray) -> np.ndarray:
    """Attention patterns ``[L, B, H, T, T]`` as the model computes them (not normalised:
    normalising the tensor family's near-zero rows would amplify rounding noise)."""
    seen: list[torch.Tensor] = []  # forward order: layer 0 first
    save = lambda _m, _i, out: seen.append(out)  # noqa: E731
    with hooks(model, {f"blocks.{i}.attn.hook_pattern": save for i in range(model.cfg.n_layers)}):
        model(torch.as_tensor(tokens))
    return np.stack([p.double().numpy() for p in seen])


def pattern_similarity(mine: np.ndarray, theirs: np.ndarray, head: Head) -> np.ndarray:
    """Cosine of a crafted head's patterns with every trained head's ``[L, H]`` (same tokens)."""
    a = mine[head[0], :, head[1]].ravel()
    b = theirs.transpose(0, 2, 1, 3, 4).reshape(theirs.shape[0], theirs.shape[2], -1)
    denom = np.linalg.norm(a) * np.linalg.norm(b, axis=-1)
    return np.where(denom > 0, b @ a / np.where(denom > 0, denom, 1.0), 0.0)


def circuit_of(model: Transformer, kind: str, layer: int, head: int) -> Factored:
    """One head circuit by kind (``qk_tokens``, ``qk_positions``, ``ov``)."""
    return {"qk_tokens": qk_tokens, "qk_positions": qk_positions, "ov": ov}[kind](
        model, layer, head
    )


def centring(kind: str, a: Transformer, b: Transformer) -> str:
    """Rows for logit-space OV and for softmax QK (blind to per-query shifts), else none."""
    return "rows" if kind == "ov" or "standard" in (a.family, b.family) else "none"


def compared(model: Transformer, kind: str, head: Head, centre: str, n_pos: int) -> Matrix:
    """The circuit as compared: centred; position QK dense ``[P, P]`` over causal pairs only.

    A causal head never scores a key after its query, so the masked half of a position
    QK is meaningless and left out (zero); softmax QK is centred over each query's
    visible keys.
    """
    f = circuit_of(model, kind, *head)
    if kind != "qk_positions":
        return f.centre(centre)
    a = f.dense()[:n_pos, :n_pos]
    keep = np.tril(np.ones(a.shape, dtype=bool))
    if centre == "rows":
        a = a - (a * keep).sum(1, keepdims=True) / keep.sum(1, keepdims=True)
    return np.where(keep, a, 0.0)


def add(items: list[Matrix]) -> Matrix:
    """Sum of compared circuits; factored ones as ``[L_1 .. L_n] [R_1; ..; R_n]``."""
    if not isinstance(items[0], Factored):
        return np.sum(items, axis=0)
    left = np.concatenate([c.left for c in items], axis=1)
    return Factored(left, np.concatenate([c.right for c in items]), sum(c.reference for c in items))


def relevant(model: Transformer, other: Transformer, comp: ComponentRecord) -> tuple[str, ...]:
    """The crafted head's circuits that carry weight (see the module docstring)."""
    learned = model.cfg.positions == other.cfg.positions == "learned"
    kinds = [k for k in CIRCUITS if k != "qk_positions" or learned]
    size = {}
    for k in kinds:
        c = circuit_of(model, k, comp.layer, comp.head)
        size[k] = 0.0 if (n := norm(c)) <= ZERO_TOL * c.reference else n / c.reference
    top = max(size.values(), default=0.0)
    return tuple(k for k in kinds if top > 0 and size[k] >= RELEVANT * top)


def match(
    crafted: Transformer,
    trained: Transformer,
    spec: Spec,
    comp: ComponentRecord,
    roles: RoleScores,
    crafted_roles: RoleScores,
    patterns: tuple[np.ndarray, np.ndarray],
) -> Match:
    """Score every trained head against ``comp`` and build its match set."""
    basis = relevant(crafted, trained, comp)
    n_pos = min(crafted.cfg.n_ctx, trained.cfg.n_ctx)
    centre = {k: centring(k, crafted, trained) for k in basis}
    ref = {k: compared(crafted, k, (comp.layer, comp.head), centre[k], n_pos) for k in basis}
    cache: dict[tuple[str, Head], Matrix] = {}

    def theirs(kind: str, head: Head) -> Matrix:
        if (kind, head) not in cache:
            cache[kind, head] = compared(trained, kind, head, centre[kind], n_pos)
        return cache[kind, head]

    def set_similarity(heads: list[Head]) -> float:
        sims = [similarity(ref[k], add([theirs(k, h) for h in heads]), "none") for k in basis]
        return float(np.mean(sims))

    role_map, own = role_of(comp, roles), role_of(comp, crafted_roles)
    role_name = ROLE_OF_KIND.get(comp.kind)
    if role_map is None:
        role_name, own = "pattern", None
        role_map = pattern_similarity(patterns[0], patterns[1], (comp.layer, comp.head))
    scores = []
    for layer in range(trained.cfg.n_layers):
        for h in range(trained.cfg.n_heads):
            sims = {k: similarity(ref[k], theirs(k, (layer, h)), "none") for k in basis}
            role = float(role_map[layer, h])
            sim = float(np.mean(list(sims.values()))) if basis else role
            scores.append(HeadScore((layer, h), sims, sim, role))
    scores.sort(key=lambda s: (-s.similarity, -s.role))
    heads, sim = _match_set(scores, basis, set_similarity)
    own_role = None if own is None else float(own[comp.layer, comp.head])
    tokens = rule_tokens(spec, comp.rules)
    return Match(comp, basis, role_name, own_role, tuple(scores), tuple(heads), sim, tokens)


def _match_set(
    scores: list[HeadScore], basis: tuple[str, ...], set_similarity
) -> tuple[list[Head], float]:
    """Role-qualified heads, then circuit-qualified heads that raise the set's similarity."""
    best_sim = max((s.similarity for s in scores), default=0.0)
    best_role = max((s.role for s in scores), default=0.0)
    by_role = [s.head for s in scores if s.role >= max(MIN_SCORE, HALF * best_role)]
    if not basis:  # role basis: every head playing the role well enough
        return by_role, best_role
    chosen = list(by_role)
    current = set_similarity(chosen) if chosen else -np.inf
    for s in scores:
        if s.head in chosen or s.similarity <= 0 or s.similarity < HALF * best_sim:
            continue
        value = set_similarity([*chosen, s.head])
        if value > current + GAIN:
            chosen.append(s.head)
            current = value
    if not by_role and current < MIN_SCORE:
        return [], max(current, 0.0) if chosen else 0.0
    return chosen, float(current)


def match_all(
    crafted: Transformer,
    trained: Transformer,
    spec: Spec,
    tokens: np.ndarray,
    seed: int = 0,
    own: tuple[RoleScores, np.ndarray] | None = None,
) -> tuple[RoleScores, list[Match]]:
    """The trained model's role scores and every crafted component's match.

    Both models should be float64 runners; ``tokens`` (sampled sequences, BOS column 0)
    give the raw attention patterns of the "pattern" role. ``own`` (the crafted model's
    role scores and patterns) saves recomputing them across many trained models.
    """
    comps = components(crafted)
    probe = tokens[:PATTERN_SEQS]
    if own is None:
        own = (role_scores(crafted, spec, comps, seed), raw_patterns(crafted, probe))
    roles = role_scores(trained, spec, comps, seed)
    pats = (own[1], raw_patterns(trained, probe))
    return roles, [match(crafted, trained, spec, c, roles, own[0], pats) for c in comps]
