"""What a checked claim reports, in a form that cannot be misread.

A :class:`Result` says what it compares and which way it fails (``kl 0.03 > max
0.001``, ``attention share 0.41 < min 0.99``), counts *distinct* contexts (Hypothesis
proposes the same context many times while it targets and shrinks; each is scored
once), carries a :class:`Coverage` line (distinct contexts, the lengths they span, the
rules that fired at them), and, for a claim about a mechanism (a head's attention),
the :class:`Effect` at its counterexample: the rule's KL there, which may well be 0,
and the shortest context found at which the output itself goes wrong.

"Minimal" counterexample means: no single edit of :func:`verify.sweep.shrink` makes it
smaller and, where the vocabulary is small enough to enumerate every shorter context
(:data:`verify.sweep.BRUTE`), none of those fails: then it is the shortest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from specs.model import Spec
from specs.truth import next_dist

# what each kind of claim compares, and whether it fails above or below its bound
MEASURES = {
    "rule_holds": ("kl", ">"),
    "rule_holds/argmax": ("argmax miss", ">"),
    "models_agree": ("kl(model || other)", ">"),
    "window_only": ("kl(context || far tokens redrawn)", ">"),
    "head_role": ("attention share on the role's targets", "<"),
    "head_role/copying": ("copying score", "<"),
    "ablation": ("extra kl on spared rules", ">"),
    "ablation/breaks": ("mean kl rise of broken rules", "<"),
    "patching": ("kl(patched || donor)", ">"),
    "statistical": ("one-sided 95% Wilson lower bound of the fraction holding", "<"),
}


@dataclass(frozen=True)
class Coverage:
    """What a search ran the model on.

    Attributes:
        distinct: distinct contexts (pairs: distinct pairs).
        lengths: ``(shortest, longest)`` context length (0 when none).
        quarters: distinct contexts per quarter of ``1..max_len``, ``((lo, hi, n), ...)``.
        rules: ``((rule, n), ...)`` the rule that fired at each context, most first.
    """

    distinct: int
    lengths: tuple[int, int]
    quarters: tuple[tuple[int, int, int], ...]
    rules: tuple[tuple[str, int], ...]

    def line(self) -> str:
        quarters = ", ".join(f"{lo}-{hi}: {n}" for lo, hi, n in self.quarters)
        rules = ", ".join(f"{r} {n}" for r, n in self.rules[:4])
        more = f" and {len(self.rules) - 4} more" if len(self.rules) > 4 else ""
        lo, hi = self.lengths
        return (
            f"{self.distinct} distinct contexts, lengths {lo}-{hi} ({quarters}); "
            f"rules fired: {rules}{more}"
        )

    def to_json(self) -> dict:
        return {
            "distinct": self.distinct,
            "lengths": list(self.lengths),
            "quarters": [list(q) for q in self.quarters],
            "rules": dict(self.rules),
        }


def coverage(spec: Spec, items) -> Coverage:
    """Coverage of the distinct ``items`` (contexts, or pairs: their first context)."""
    ctxs = [list(x[0]) if x and isinstance(x[0], tuple) else list(x) for x in items]
    if not ctxs:
        return Coverage(0, (0, 0), (), ())
    lengths = [len(c) for c in ctxs]
    step = math.ceil(spec.max_len / 4)
    quarters = tuple(
        (lo, min(lo + step - 1, spec.max_len), sum(lo <= n < lo + step for n in lengths))
        for lo in range(1, spec.max_len + 1, step)
    )
    names = spec.rule_names()
    counts: dict[str, int] = {}
    for c in ctxs:
        rule = names[next_dist(spec, c)[1]]
        counts[rule] = counts.get(rule, 0) + 1
    rules = tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return Coverage(len(ctxs), (min(lengths), max(lengths)), quarters, rules)


@dataclass(frozen=True)
class Effect:
    """The behaviour where a mechanism claim failed.

    Attributes:
        rule: the rule firing at the mechanism counterexample.
        kl: KL(spec || model) there (small: the output is right despite the mechanism).
        max_kl: the bound the output is held to (the model's bound for the rule).
        wrong_at: the shortest context found at which the output itself breaks the
            bound (the rule's claim searched again), or None when none was found.
        wrong_kl: KL(spec || model) at ``wrong_at``.
    """

    rule: str
    kl: float
    max_kl: float
    wrong_at: list[str] | None = None
    wrong_kl: float | None = None

    def line(self) -> str:
        here = "right" if self.kl <= self.max_kl else "wrong too"
        head = (
            f"mechanism counterexample: the output there is {here} "
            f"({self.rule} kl {self.kl:.3g}, max {self.max_kl:.3g})"
        )
        if self.wrong_at is None:
            return head + "; no context found where the mechanism fault changes the output"
        shown = " ".join(self.wrong_at) or "(BOS only)"
        return f"{head}; the output goes wrong first at '{shown}' (kl {self.wrong_kl:.3g})"

    def to_json(self) -> dict:
        return {
            "rule": self.rule,
            "kl": _finite(self.kl),
            "max_kl": self.max_kl,
            "wrong_at": self.wrong_at,
            "wrong_kl": None if self.wrong_kl is None else _finite(self.wrong_kl),
        }


def _finite(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)


@dataclass(frozen=True)
class Result:
    """One claim's verdict.

    Attributes:
        measure: what ``value`` is (:data:`MEASURES`).
        fails_if: ``">"``: the claim fails when ``value`` exceeds ``threshold`` (a max);
            ``"<"``: when it falls below it (a min).
        examples: distinct contexts (or pairs) the model ran on.
        scored: items scored in all phases, repeats included.
        loosened: why the claim's bound differs from the crafted one ("" when it does not).
        detail: a second comparison the verdict rests on (an ablation's spared rules).
    """

    name: str
    kind: str
    passed: bool
    counterexample: list[str] | None
    value: float  # the figure at the counterexample (or the worst / the fraction seen)
    threshold: float
    examples: int
    warnings: tuple[str, ...] = field(default=())
    found_after: int | None = None  # items scored before the first failure
    measure: str = "kl"
    fails_if: str = ">"
    scored: int = 0
    coverage: Coverage | None = None
    effect: Effect | None = None
    loosened: str = ""
    detail: str = ""

    @property
    def distinct(self) -> int:
        return self.examples

    def comparison(self) -> str:
        """``kl 0.03 > max 0.001`` (failed), ``kl 0 <= max 0.001`` (passed)."""
        bound = "max" if self.fails_if == ">" else "min"
        held = {">": "<=", "<": ">="}
        op = held[self.fails_if] if self.passed else self.fails_if
        return f"{self.measure} {self.value:.4g} {op} {bound} {self.threshold:.4g}"

    def to_json(self) -> dict:
        """JSON-ready; a non-finite value (a diverged model) is the string "nan" or "inf"."""
        return {
            "name": self.name,
            "passed": self.passed,
            "counterexample": self.counterexample,
            "value": _finite(self.value),
            "threshold": self.threshold,
            "compares": self.comparison(),
            "fails_if": "above threshold" if self.fails_if == ">" else "below threshold",
            "examples": self.examples,
            "scored": self.scored,
            "kind": self.kind,
            "warnings": list(self.warnings),
            "found_after": self.found_after,
            "coverage": self.coverage.to_json() if self.coverage else None,
            "effect": self.effect.to_json() if self.effect else None,
            "loosened": self.loosened,
            "detail": self.detail,
        }

    def lines(self) -> list[str]:
        """What to print under the table for this claim: the comparison, the coverage,
        the effect of a mechanism counterexample, a loosened bound."""
        out = [f"{self.name}: {'pass' if self.passed else 'FAIL'}, {self.comparison()}"]
        if self.detail:
            out.append(f"  {self.detail}")
        if self.coverage is not None:
            out.append(f"  covered: {self.coverage.line()}")
        if self.effect is not None:
            out.append(f"  {self.effect.line()}")
        if self.loosened:
            out.append(f"  loosened: {self.loosened}")
        return out
