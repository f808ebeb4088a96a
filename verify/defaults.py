"""Every compiled spec's default claims: one per rule, plus the roles of its components.

So ``craft check crafted.safetensors --spec SPEC`` checks a crafted model against its
own circuit, and the same claims run against a trained model say which parts of the
crafted explanation it does not share (head indices there are the crafted ones: a
trained model that splits a function across heads fails the role claims, which is the
point of running them).
"""

from __future__ import annotations

from dataclasses import replace

from craft.models import Transformer
from specs.model import Spec
from verify.claims import Ablation, Claim, HeadRole, RuleHolds

ROLE_SCORE = 0.99
DEFAULT_KL = 1e-3


def default_claims(crafted: Transformer, spec: Spec) -> tuple[Claim, ...]:
    """Claims read from a crafted model's metadata (its bounds and components)."""
    bounds = crafted.meta.get("bounds") or {}
    claims = [
        Claim(
            f"holds:{name}",
            RuleHolds(rule=name, max_kl=max(bounds.get(name, DEFAULT_KL), 1e-9)),
            exact_region=True,
        )
        for name in spec.rule_names()
        if name != "start"
    ]
    heads = _heads(crafted)
    kinds = {r.name: type(r).__name__ for r in spec.rules}
    for (layer, index), comp in heads.items():
        head = f"{layer}.{index}"
        kind, name = comp["kind"], comp["name"]
        if kind == "PrevToken":
            claims.append(
                Claim(
                    f"role:{name}", HeadRole(head=head, role="previous-token", min_score=ROLE_SCORE)
                )
            )
            broken = tuple(n for n, k in kinds.items() if k in ("Trigram", "Induction"))
        elif kind == "InductionHead":
            rule = comp["rules"][0]
            claims.append(
                Claim(
                    f"role:{name}",
                    HeadRole(head=head, role="induction", rule=rule, min_score=ROLE_SCORE),
                )
            )
            claims.append(
                Claim(f"copying:{name}", HeadRole(head=head, role="copying", min_score=ROLE_SCORE))
            )
            broken = (rule,)
        elif kind == "Detector":
            broken = tuple(comp.get("rules", ()))
            claims += [
                Claim(
                    f"role:{name}:{r}",
                    HeadRole(head=head, role="skip-bigram", rule=r, min_score=ROLE_SCORE),
                )
                for r in broken
            ]
        else:
            continue
        if broken:
            claims.append(
                Claim(f"ablate:{name}", Ablation(head=head, breaks=broken, min_increase=0.1))
            )
    return tuple(claims)


def _heads(model: Transformer) -> dict[tuple[int, int], dict]:
    """(layer, head index) -> the compiler's record of the component there."""
    return {
        (c["layer"], c["head"]): c
        for c in model.meta.get("components", [])
        if c.get("sublayer") == "attn" and "head" in c
    }


def for_trained(
    claims: tuple[Claim, ...], tolerance: float, fraction: float | None
) -> tuple[Claim, ...]:
    """Loosen crafted claims for a trained model: every ``rule_holds`` threshold becomes at
    least ``tolerance`` nats (a crafted bound of 2e-9 is not what training promises), and
    with ``fraction`` every claim is statistical (holds on at least that fraction of
    sampled contexts, 95% lower bound) instead of for all contexts."""
    out = []
    for c in claims:
        body = c.body
        if isinstance(body, RuleHolds):
            body = body.model_copy(update={"max_kl": max(body.max_kl, tolerance)})
        out.append(replace(c, body=body, fraction=fraction, exact_region=False))
    return tuple(out)
