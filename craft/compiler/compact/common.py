"""What every compact head construction shares: its plan record, the refusals and
collision errors, the worst-collision report, and what a firing rule writes."""

from __future__ import annotations

from dataclasses import dataclass

from craft.compiler.analysis import Analysis, RuleInfo
from craft.compiler.compact.codes import Codes, Separation, Vec, scale
from craft.models.layout import Direction
from specs.errors import CraftError


@dataclass(frozen=True)
class HeadPlan:
    name: str
    kind: str  # a ComponentKind value
    layer: int
    rules: tuple[str, ...]


def unsupported(what: str) -> CraftError:
    return CraftError(
        f"the attention-only compact compiler cannot build {what} yet",
        where="--shape",
        fix="compile without --shape (the one-hot layout builds every spec)",
    )


def check_lower(an: Analysis, r: RuleInfo) -> None:
    """A compact readout cancels no lower rule: refuse a non-deterministic rule above a
    deterministic one with a fire feature that can fire with it."""
    if not r.deterministic:
        lower = [x.name for x in an.lower_cofiring(r) if x.deterministic and x.rule_kind.fires]
        if lower:
            raise unsupported(f"{r.name} above the deterministic rules {lower}")


def collision(name: str, what: str) -> CraftError:
    return CraftError(
        f"head {name}: the compact code cannot separate {what}",
        where="--shape",
        fix="compile without --shape (one-hot codes separate every token)",
    )


@dataclass(frozen=True)
class Interference:
    """The worst collision a head's reads meet: the member token that reads lowest and the
    non-member that reads highest; the head's score scale is divided by ``low - high``."""

    head: str
    rules: tuple[str, ...]
    reads: str
    member: str
    other: str
    low: float
    high: float

    def describe(self) -> str:
        return (
            f"{self.head}: {self.reads} {self.member} reads {self.low:g}, "
            f"{self.other} reads {self.high:g} (margin x {1 / (self.low - self.high):g})"
        )

    def to_json(self) -> dict:
        return {**self.__dict__, "rules": list(self.rules)}


def interference(an, hp: HeadPlan, reads: str, sep: Separation) -> Interference:
    toks = an.spec.vocab.tokens
    name = lambda v: toks[v] if v >= 0 else "-"  # noqa: E731
    return Interference(
        hp.name, hp.rules, reads, name(sep.member), name(sep.other), sep.low, sep.high
    )


def write(codes: Codes, r: RuleInfo, boost) -> Vec:
    """What a firing rule writes: its target's output code times its boost, or ``read:r``."""
    if r.deterministic:
        return scale(codes.out(r.target), boost[r.name])
    return {Direction("read", r.name): 1.0}
