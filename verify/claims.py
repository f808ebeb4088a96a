"""Claims about a model, as data: parsed from YAML with one-line errors, or made in code.

Format ``craft-claims/1``::

    format: craft-claims/1
    claims:
      - name: bigrams-exact
        rule_holds: {rule: noun-bigrams, max_kl: 0.001}
      - name: same-as-crafted
        models_agree: {other: crafted.safetensors, rule: beach-big, max_kl: 0.01}
      - name: window
        window_only: {rule: beach-big, window: 9, max_kl: 0.001}
      - name: L0H0-prev
        head_role: {head: "0.0", role: previous-token, min_score: 0.9}
      - name: induction-needs-L1H0
        ablation: {head: "1.0", breaks: [noun-induction], min_increase: 1.0, max_other: 0.001}
      - name: induction-needs-L1H0-information
        ablation: {head: "1.0", breaks: [noun-induction], method: mean}  # or zero (default)

Each claim holds *for all* contexts its strategy generates (a counterexample is shrunk
to a minimal context) unless it sets ``fraction: p``: then it must hold on at least a
fraction p of sampled contexts, with 95% confidence (Wilson lower bound).

An ablation replaces the head's output by zero (``method: zero``, the default) or, with
``method: mean``, at each position by the head's mean output there over sequences
sampled from the spec (see :class:`Ablation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from specs.errors import CraftError
from specs.yamlio import parse_text

Role = Literal["previous-token", "induction", "skip-bigram", "copying"]
MEAN_SEQUENCES = 128  # reference sample of a mean ablation (sequences of max_len tokens)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleHolds(_Strict):
    """Excess loss KL(spec || model) <= max_kl where ``rule`` fires (argmax: top-1 agrees)."""

    rule: str
    max_kl: float = Field(1e-3, ge=0)
    argmax: bool = False


class ModelsAgree(_Strict):
    """KL(model || other) <= max_kl where ``rule`` fires (every context when rule is None)."""

    other: str
    rule: str | None = None
    max_kl: float = Field(1e-2, ge=0)


class WindowOnly(_Strict):
    """Where ``rule`` fires, tokens more than ``window`` back do not change the output."""

    rule: str
    window: int = Field(ge=0)
    max_kl: float = Field(1e-3, ge=0)


class HeadRole(_Strict):
    """Head ``"L.H"`` plays ``role``: its attention on the role's target >= min_score."""

    head: str = Field(pattern=r"^\d+\.\d+$")
    role: Role
    min_score: float = Field(0.9, ge=0, le=1)
    rule: str | None = None  # skip-bigram: the rule whose anchor the head attends to


class Ablation(_Strict):
    """Ablating head ``"L.H"`` raises the excess loss of each rule in ``breaks`` by at least
    ``min_increase`` (mean) and of every other rule by at most ``max_other`` (per context).

    ``method`` says what replaces the head's output: ``zero`` (nothing: the head is
    removed) or ``mean`` (at each position, the head's mean output there over
    ``MEAN_SEQUENCES`` sequences sampled from the spec, seeded by the check's seed; the
    head then carries no information about the context but keeps its average effect,
    such as a bias that later layers rely on). Zero ablation can break rules the head
    has nothing to do with by moving the residual off-distribution; mean ablation
    cannot do that, but it can break rules whose contexts differ from the average.
    """

    head: str = Field(pattern=r"^\d+\.\d+$")
    breaks: tuple[str, ...] = Field(min_length=1)
    min_increase: float = Field(0.1, gt=0)
    max_other: float = Field(1e-3, ge=0)
    method: Literal["zero", "mean"] = "zero"


class Patching(_Strict):
    """Head ``"L.H"`` carries ``rule``'s output: for pairs of contexts that differ only in
    tokens of ``category`` (both firing ``rule``), running one context with the head's
    output taken from the other makes the model predict what it predicts on the other,
    within ``max_kl``. Checked in both directions (clean->corrupt finds OR-like circuits,
    corrupt->clean AND-like ones); ``direction`` restricts it to one."""

    head: str = Field(pattern=r"^\d+\.\d+$")
    rule: str
    category: str
    max_kl: float = Field(0.1, ge=0)
    direction: Literal["both", "clean->corrupt", "corrupt->clean"] = "both"


KINDS = {
    "rule_holds": RuleHolds,
    "models_agree": ModelsAgree,
    "window_only": WindowOnly,
    "head_role": HeadRole,
    "ablation": Ablation,
    "patching": Patching,
}


@dataclass(frozen=True)
class Claim:
    """One named claim: its kind's parameters and how it is judged."""

    name: str
    body: RuleHolds | ModelsAgree | WindowOnly | HeadRole | Ablation | Patching
    fraction: float | None = None  # None: for all contexts; else statistical
    exact_region: bool = False  # only where a compiled tensor model's conditions hold

    @property
    def kind(self) -> str:
        return next(k for k, cls in KINDS.items() if isinstance(self.body, cls))


def head_of(text: str) -> tuple[int, int]:
    layer, head = text.split(".")
    return int(layer), int(head)


def parse_claims(data: str | dict, source: str = "<claims>") -> tuple[Claim, ...]:
    """Claims from YAML text or a dict; every mistake is one CraftError line."""
    raw = parse_text(data, source) if isinstance(data, str) else data
    if not isinstance(raw, dict) or raw.get("format") != "craft-claims/1":
        raise CraftError(
            "not a claims file",
            where=f"{source}: format",
            fix="start with `format: craft-claims/1`",
        )
    items = raw.get("claims")
    if not isinstance(items, list) or not items:
        raise CraftError("no claims", where=f"{source}: claims", fix="list at least one claim")
    claims, names = [], set()
    for i, item in enumerate(items):
        claims.append(_claim(item, f"{source}: claims[{i}]"))
        if claims[-1].name in names:
            raise CraftError(
                f"duplicate claim name {claims[-1].name!r}",
                where=f"{source}: claims[{i}].name",
                fix="give every claim its own name",
            )
        names.add(claims[-1].name)
    return tuple(claims)


def _claim(item, where: str) -> Claim:
    if not isinstance(item, dict):
        raise CraftError("a claim must be a mapping", where=where, fix="see verify/claims.py")
    kinds = [k for k in item if k in KINDS]
    unknown = set(item) - set(KINDS) - {"name", "fraction"}
    if unknown or len(kinds) != 1:
        what = f"unknown keys {sorted(unknown)}" if unknown else f"{len(kinds)} claim kinds"
        raise CraftError(what, where=where, fix=f"give exactly one of {', '.join(KINDS)}")
    kind = kinds[0]
    fraction = item.get("fraction")
    if fraction is not None and not (isinstance(fraction, int | float) and 0 < fraction <= 1):
        raise CraftError(
            f"fraction is {fraction!r}", where=f"{where}.fraction", fix="use 0 < p <= 1"
        )
    try:
        body = KINDS[kind].model_validate(item[kind])
    except ValidationError as e:
        err = e.errors()[0]
        path = ".".join(str(x) for x in err["loc"])
        raise CraftError(
            err["msg"],
            where=f"{where}.{kind}.{path}".rstrip("."),
            fix="see verify/claims.py for the fields",
        ) from None
    name = item.get("name") or f"{kind}-{where.rsplit('[', 1)[-1].rstrip(']')}"
    return Claim(str(name), body, fraction)


def load_claims(path: str | Path) -> tuple[Claim, ...]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CraftError(
            f"cannot read claims file ({e})", where=str(path), fix="check the path"
        ) from None
    return parse_claims(text, str(path))
