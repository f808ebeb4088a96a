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

:func:`parse_claims` checks each claim alone (kinds, fields, types, finite numbers);
:func:`validate` checks every claim against the spec and the model before any search
(rules, heads, categories, windows, the other model of ``models_agree``), so a claims
file that cannot be checked stops with one line naming the file, the claim and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from craft.models import Transformer, load_model
from specs.errors import CraftError
from specs.model import Spec
from specs.yamlio import parse_text
from verify import kinds
from verify.behaviour import check_fit

Role = Literal["previous-token", "induction", "skip-bigram", "copying"]
MEAN_SEQUENCES = 128  # reference sample of a mean ablation (sequences of max_len tokens)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RuleHolds(_Strict):
    """Excess loss KL(spec || model) <= max_kl where ``rule`` fires (argmax: top-1 agrees)."""

    rule: str
    max_kl: float = Field(1e-3, ge=0)
    argmax: bool = Field(False, strict=True)


class ModelsAgree(_Strict):
    """KL(model || other) <= max_kl where ``rule`` fires (every context when rule is None)."""

    other: str
    rule: str | None = None
    max_kl: float = Field(1e-2, ge=0)


class WindowOnly(_Strict):
    """Where ``rule`` fires, tokens more than ``window`` back do not change the output."""

    rule: str
    window: int = Field(ge=0, strict=True)
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
    where: str = ""  # "FILE: claims[i]" for a claim read from a file (errors name it)
    loosened: str = ""  # why a bound is looser than the crafted one (said with the result)

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
    named = f"claim {str(item['name'])!r}: " if item.get("name") else ""
    kinds = [k for k in item if k in KINDS]
    unknown = set(item) - set(KINDS) - {"name", "fraction"}
    if unknown or len(kinds) != 1:
        what = f"unknown keys {sorted(map(str, unknown))}" if unknown else f"{len(kinds)} kinds"
        raise CraftError(named + what, where=where, fix=f"give exactly one of {', '.join(KINDS)}")
    kind = kinds[0]
    fraction = item.get("fraction")
    number = isinstance(fraction, int | float) and not isinstance(fraction, bool)
    if fraction is not None and not (number and 0 < fraction <= 1):
        raise CraftError(
            f"{named}fraction is {fraction!r}",
            where=f"{where}.fraction",
            fix="a fraction is a number p with 0 < p <= 1 (or leave it out: for all contexts)",
        )
    try:
        body = KINDS[kind].model_validate(item[kind])
    except ValidationError as e:
        err = e.errors()[0]
        path = ".".join(str(x) for x in err["loc"])
        fields = ", ".join(KINDS[kind].model_fields)
        raise CraftError(
            named + err["msg"],
            where=f"{where}.{kind}.{path}".rstrip("."),
            fix=f"the fields of {kind} are {fields} (see verify/claims.py)",
        ) from None
    name = item.get("name") or f"{kind}-{where.rsplit('[', 1)[-1].rstrip(']')}"
    return Claim(str(name), body, fraction, where=where)


def load_claims(path: str | Path) -> tuple[Claim, ...]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CraftError(
            f"cannot read claims file ({e})", where=str(path), fix="check the path"
        ) from None
    return parse_claims(text, str(path))


STATISTICAL = (RuleHolds, ModelsAgree, HeadRole, Ablation)  # kinds that take `fraction`
_STAT_KINDS = ("rule_holds", "models_agree", "head_role (but copying)", "ablation")


def _error(c: Claim, field: str, message: str, fix: str) -> CraftError:
    """An error naming the claims file and YAML path (or the claim, when made in code);
    ``field`` is a path under the claim's kind, or ``fraction``, beside it."""
    path = field if field == "fraction" else f"{c.kind}.{field}"
    if not c.where:
        return CraftError(message, where=f"claim {c.name!r}.{path}", fix=fix)
    return CraftError(f"claim {c.name!r}: {message}", where=f"{c.where}.{path}", fix=fix)


def check_model(model: Transformer, spec: Spec, *, where: str) -> None:
    """Raise CraftError unless ``model`` predicts the spec's vocabulary and reads contexts
    of up to ``spec.max_len`` tokens after BOS (what the searches draw)."""
    check_fit(model, spec, where=where)
    if model.cfg.n_ctx < spec.max_len + 1:
        raise CraftError(
            f"the model reads {model.cfg.n_ctx} positions, but contexts of spec "
            f"{spec.name!r} take up to {spec.max_len + 1} (max_len {spec.max_len} and BOS)",
            where=where,
            fix=f"check against a spec with max_len at most {model.cfg.n_ctx - 1}",
        )


def validate(claims, spec: Spec, model: Transformer) -> None:
    """Check every claim against ``spec`` and ``model`` before searching.

    Raises:
        CraftError: at the first claim naming an unknown rule or category, a head the
            model lacks, a window no context of ``spec.max_len`` tokens can show, a
            ``fraction`` on a kind that is not statistical, or a ``models_agree`` model
            that does not load or reads another vocabulary.
    """
    for c in claims:
        _rules_known(c, spec)
        if hasattr(c.body, "head"):
            _head_exists(c, c.body.head, model)
        if c.fraction is not None and not _statistical(c):
            raise _error(
                c,
                "fraction",
                f"{c.kind} claims cannot be statistical",
                fix=f"drop fraction, or use one of {', '.join(_STAT_KINDS)}",
            )
        _body_fits(c, spec, model)


def _statistical(c: Claim) -> bool:
    copying = isinstance(c.body, HeadRole) and c.body.role == "copying"
    return isinstance(c.body, STATISTICAL) and not copying


def _rules_known(c: Claim, spec: Spec) -> None:
    """Every rule a claim names is the spec's; ``start`` (the empty context) only where
    a claim is about single contexts."""
    body, names = c.body, spec.rule_names()
    named = (
        [(f"breaks[{i}]", r) for i, r in enumerate(body.breaks)]
        if isinstance(body, Ablation)
        else []
    )
    if getattr(body, "rule", None) is not None:
        named.append(("rule", body.rule))
    allowed = [n for n in names if n != "start" or isinstance(body, RuleHolds | ModelsAgree)]
    for field, rule in named:
        if rule == "start" and rule not in allowed:
            message = f"rule 'start' (the empty context) cannot be used in a {c.kind} claim"
        else:
            message = f"{rule!r} is not a rule of spec {spec.name!r}"
        if rule not in allowed:
            raise _error(c, field, message, fix=f"use one of {', '.join(allowed)}")


def _head_exists(c: Claim, text: str, model: Transformer) -> None:
    layer, head = head_of(text)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    if layer >= n_layers or head >= n_heads:
        raise _error(
            c,
            "head",
            f"head {text} is not in the model ({n_layers} layers x {n_heads} heads)",
            fix=f"use L.H with L < {n_layers} and H < {n_heads}",
        )


def _body_fits(c: Claim, spec: Spec, model: Transformer) -> None:
    """The checks of one kind: windows, roles, categories, the other model."""
    body = c.body
    if isinstance(body, WindowOnly) and body.window > spec.max_len - 2:
        raise _error(
            c,
            "window",
            f"window {body.window} leaves no earlier token to vary in contexts of at most "
            f"max_len {spec.max_len} tokens (a pair needs window + 2)",
            fix=f"use a window of at most {max(0, spec.max_len - 2)}",
        )
    if isinstance(body, HeadRole):
        _role_fits(c, body, spec)
    if isinstance(body, Patching):
        members = spec.vocab.resolve(body.category) if _category(spec, body.category) else ()
        if len(members) < 2:
            cats = [n for n in spec.vocab.category_names() if len(spec.vocab.resolve(n)) >= 2]
            raise _error(
                c,
                "category",
                f"spec {spec.name!r} has no category {body.category!r} of two or more tokens",
                fix=f"use one of {', '.join(cats)}",
            )
    if isinstance(body, ModelsAgree):
        _other_fits(c, body, spec, model)


def _category(spec: Spec, name: str) -> bool:
    return name in spec.vocab.category_names()


def _role_fits(c: Claim, body: HeadRole, spec: Spec) -> None:
    if needed := kinds.with_role(body.role):
        fits = [r.name for r in spec.rules if kinds.of(r).key in needed]
        if body.rule not in fits:
            raise _error(
                c,
                "rule",
                f"a {body.role} role needs a {' or '.join(needed)} rule, got {body.rule!r}",
                fix=f"set rule to one of {', '.join(fits) or '(none in this spec)'}",
            )
    if body.role in ("previous-token", "induction") and spec.max_len < 2:
        raise _error(
            c,
            "role",
            f"a {body.role} role needs contexts of 2 tokens; max_len is {spec.max_len}",
            fix="check it against a spec with max_len >= 2",
        )


def _other_fits(c: Claim, body: ModelsAgree, spec: Spec, model: Transformer) -> None:
    """The other model loads, fits the spec and reads the same tokens as ``model``."""
    try:
        other = load_model(body.other)
        check_model(other, spec, where=body.other)
    except CraftError as e:  # its own message, under this claim's name and path
        message = str(e).removesuffix(f"; fix: {e.fix}") if e.fix else str(e)
        raise _error(c, "other", message, fix=e.fix or "name another model") from None
    if (other.cfg.n_vocab, other.cfg.n_out) != (model.cfg.n_vocab, model.cfg.n_out):
        raise _error(
            c,
            "other",
            f"{body.other} reads/predicts {other.cfg.n_vocab}/{other.cfg.n_out} tokens, the "
            f"model {model.cfg.n_vocab}/{model.cfg.n_out}",
            fix="compare two models made for the same spec",
        )
