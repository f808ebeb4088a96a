"""Every compiled spec's default claims: one per rule, plus the roles of its components.

So ``craft check crafted.safetensors --spec SPEC`` checks a crafted model against its
own circuit, and the same claims run against a trained model say which parts of the
crafted explanation it does not share. A trained model keeps its functions at other
head indices (and splits them across heads), so :func:`retarget` first moves every
head claim to the trained head that :mod:`verify.matching` matches to the crafted
component (the match set's head with the best role score).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from craft.models import ComponentKind, ComponentRecord, Transformer, component_records
from specs.model import Spec
from specs.sample import sample
from verify import kinds
from verify.claims import Ablation, Claim, HeadRole, Patching, RuleHolds, head_of
from verify.diff import as_runner
from verify.head_scores import skip_bigram_scores
from verify.matching import MIN_SCORE, Match, match_all

ROLE_SCORE = 0.99
DEFAULT_KL = 1e-3


def default_claims(crafted: Transformer, spec: Spec) -> tuple[Claim, ...]:
    """Claims read from a crafted model's metadata (its bounds and components).

    One ``holds:<rule>`` per rule, ``start`` (the empty context) included, then per
    attention component the claims of its kind (:func:`_head_claims`).
    """
    bounds = crafted.meta.get("bounds") or {}
    claims = [
        Claim(
            f"holds:{name}",
            RuleHolds(rule=name, max_kl=max(bounds.get(name, DEFAULT_KL), 1e-9)),
            exact_region=True,
        )
        for name in spec.rule_names()
    ]
    reads_prev = tuple(r.name for r in spec.rules if kinds.of(r).reads_prev)
    heads = sorted(_heads(crafted), key=lambda r: (r.layer, r.head))
    for rec in heads:
        claims += _head_claims(rec, reads_prev, _off_support(rec, spec))
    share = [r for r in heads if r.kind == ComponentKind.POSITION_SHARE]
    if share:  # a position-free model: every head above reads the position it derives
        served = tuple(dict.fromkeys(x for r in heads if r.layer > share[0].layer for x in r.rules))
        if served:
            head = f"{share[0].layer}.{share[0].head}"
            ablate = Ablation(head=head, breaks=served, min_increase=0.1)
            claims.append(Claim(f"ablate:{share[0].name}", ablate))
    return tuple(claims)


def _off_support(rec: ComponentRecord, spec: Spec) -> bool:
    """Whether a rule the component serves says its ablation shows only off the spec's
    support (:attr:`verify.kinds.base.VerifyKind.off_support`)."""
    rules = [r for r in spec.rules if r.name in rec.rules]
    return any(rec.kind.value in kinds.of(r).off_support for r in rules)


def _head_claims(
    rec: ComponentRecord, reads_prev: tuple[str, ...], off_support: bool = False
) -> list[Claim]:
    """Role claims of one attention component, then ``ablate:<name>``: zero-ablating the
    head breaks the rules it serves (the previous-token head: every trigram and
    induction rule, which read ``prev``)."""
    head, name = f"{rec.layer}.{rec.head}", rec.name
    claims = []
    if rec.kind == ComponentKind.PREVIOUS_TOKEN:
        role = HeadRole(head=head, role="previous-token", min_score=ROLE_SCORE)
        claims.append(Claim(f"role:{name}", role))
        broken = reads_prev
    elif rec.kind == ComponentKind.INDUCTION:
        rule = rec.rules[0]
        role = HeadRole(head=head, role="induction", rule=rule, min_score=ROLE_SCORE)
        claims.append(Claim(f"role:{name}", role))
        copying = HeadRole(head=head, role="copying", min_score=ROLE_SCORE)
        claims.append(Claim(f"copying:{name}", copying))
        broken = (rule,)
    elif rec.kind == ComponentKind.SKIP_DETECTOR:
        broken = rec.rules
        claims += [
            Claim(
                f"role:{name}:{r}",
                HeadRole(head=head, role="skip-bigram", rule=r, min_score=ROLE_SCORE),
            )
            for r in broken
        ]
    elif off_support:  # its effect shows only off the spec's support
        broken = ()
    else:  # trigram-head, readout-head, bracket heads: no named role, their rules need them
        broken = rec.rules
    if broken:
        ablate = Ablation(head=head, breaks=broken, min_increase=0.1)
        claims.append(Claim(f"ablate:{name}", ablate))
    return claims


def _heads(model: Transformer) -> tuple[ComponentRecord, ...]:
    """The compiler's records of the model's attention components."""
    return tuple(r for r in component_records(model) if r.sublayer == "attn")


def for_trained(
    claims: tuple[Claim, ...], tolerance: float, fraction: float | None
) -> tuple[Claim, ...]:
    """Loosen crafted claims for a trained model: every ``rule_holds`` threshold becomes at
    least ``tolerance`` nats (a crafted bound of 2e-9 is not what training promises), and
    with ``fraction`` every claim is statistical (holds on at least that fraction of
    sampled contexts, 95% lower bound) instead of for all contexts."""
    out = []
    for c in claims:
        body, why = c.body, [c.loosened] if c.loosened else []
        if isinstance(body, RuleHolds) and tolerance > body.max_kl:
            why.append(f"max_kl {body.max_kl:.3g} -> {tolerance:.3g} (--tolerance)")
            body = body.model_copy(update={"max_kl": tolerance})
        if fraction is not None:
            why.append(f"for all contexts -> on >= {fraction:g} of sampled ones (--fraction)")
        out.append(
            replace(c, body=body, fraction=fraction, exact_region=False, loosened="; ".join(why))
        )
    return tuple(out)


def retarget(
    claims: tuple[Claim, ...],
    crafted: Transformer,
    trained: Transformer,
    spec: Spec,
    *,
    seed: int = 0,
    n_seqs: int = 64,
    keep_thresholds: bool = False,
) -> tuple[Claim, ...]:
    """Move each head claim about a crafted component to its trained match.

    The claim's head becomes the match set's head with the best role score (for a
    component split across heads, the one that plays the role most; for a skip-bigram
    role claim, the best head for that claim's rule), the claim's name
    gains ``@L<l>H<h>``, and a role claim's ``min_score`` drops to at most the score the
    matching itself asks of a head (``MIN_SCORE``, 0.3): a trained head is never as
    sharp as a crafted one. The drop is never silent: the claim's ``loosened`` says
    from what to what and why, and ``check`` prints it with the result;
    ``keep_thresholds`` keeps the crafted scores instead. A component with no match
    keeps the crafted head index and gains ``@unmatched`` in its name, so its claims
    fail where the function is absent.
    Claims about heads that are not crafted components, and rule claims, are unchanged.
    """
    runners = [as_runner(m) for m in (crafted, trained)]
    length = min(spec.max_len, crafted.cfg.n_ctx - 1, trained.cfg.n_ctx - 1)
    tokens, _ = sample(spec, n_seqs, length, seed)
    _, matches = match_all(*runners, spec, tokens, seed)
    by_head = {(m.component.layer, m.component.head): m for m in matches}
    out = []
    for c in claims:
        body = c.body
        m = by_head.get(head_of(body.head)) if hasattr(body, "head") else None
        if m is None or not isinstance(body, HeadRole | Ablation | Patching):
            out.append(c)
            continue
        per_rule = None
        if isinstance(body, HeadRole) and body.role == "skip-bigram" and body.rule and m.heads:
            per_rule = skip_bigram_scores(runners[1], spec, [body.rule], seed=seed)
        head, tag = _best(m, per_rule)
        update: dict[str, object] = {"head": head}
        why = c.loosened
        if isinstance(body, HeadRole) and not keep_thresholds and body.min_score > MIN_SCORE:
            update["min_score"] = MIN_SCORE
            why = (
                f"min_score {body.min_score:g} -> {MIN_SCORE:g}: the score the matching asks "
                "of a trained head (--like; a trained head is never as sharp as a crafted "
                "one); keep_thresholds keeps the crafted score"
            )
        body = body.model_copy(update=update)
        out.append(replace(c, name=f"{c.name}@{tag}", body=body, loosened=why))
    return tuple(out)


def _best(m: Match, scores: np.ndarray | None = None) -> tuple[str, str]:
    """The match set's best-role head (by ``scores [L, H]`` when given, e.g. one rule's
    skip-bigram score) as ``("L.H", "L<l>H<h>")``; the crafted head when unmatched."""
    if not m.heads:
        return f"{m.component.layer}.{m.component.head}", "unmatched"
    roles = {s.head: s.role for s in m.scores}
    if scores is not None:
        roles = {(la, h): float(scores[la, h]) for la, h in m.heads}
    la, h = max(m.heads, key=lambda x: roles.get(x, 0.0))
    return f"{la}.{h}", f"L{la}H{h}"
