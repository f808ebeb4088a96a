"""The check: a converted model against ``rasp.evaluate``, the program's own semantics.

Every input up to ``max_len`` when there are at most ``limit`` (100,000) of them.
Otherwise a *sampler* checks a sample: ``verify.tracr_check`` runs the Hypothesis
search that ``craft check`` uses (batched, targeted, seeded, with a replay database,
shrinking a failure to a minimal failing input). ``craft`` may not import ``verify``,
so the sampler is passed in (the ``craft`` front door passes it to ``craft tracr``);
without one, :func:`check` is exhaustive only. Positions where ``rasp.evaluate`` gives
``None`` (undefined, e.g. before a shift) are not compared; numerical outputs agree
within ``atol``.

Tracr's discretising MLPs (numerical Maps, SelectorWidth) are exact only up to
``mlp_exactness``; on long inputs they fail silently. When a failing program uses
them, the result's ``diagnosis`` says so and ``fix`` names the higher exactness.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from craft.tracr.model import TracrModel, jsonable
from specs.errors import CraftError

LIMIT = 100_000


@dataclass(frozen=True)
class Failure:
    """One input (BOS excluded) where the model and ``rasp.evaluate`` disagree."""

    input: tuple[Any, ...]
    expected: tuple[Any, ...]
    got: tuple[Any, ...]

    def to_json(self) -> dict:
        return {k: jsonable(list(getattr(self, k))) for k in ("input", "expected", "got")}


@dataclass(frozen=True)
class CheckResult:
    """Agreement of a model with its program.

    Attributes:
        agreement: fraction of checked inputs decoded correctly at every defined position.
        checked: inputs checked; exhaustive: all inputs up to max_len (else sampled).
        undefined: inputs skipped because ``rasp.evaluate`` raised on them.
        failures: up to ``max_failures`` failing inputs; when sampled and shrunk, the
            first one is Hypothesis's minimal failing input.
        diagnosis, fix: why it fails and what to do, when the cause is known.
    """

    agreement: float
    checked: int
    exhaustive: bool
    failures: tuple[Failure, ...] = ()
    diagnosis: str | None = None
    fix: str | None = None
    suspects: tuple[str, ...] = field(default=())
    undefined: int = 0
    found_after: int | None = None  # sampled: inputs the search scored up to a failure

    @property
    def passed(self) -> bool:
        return self.agreement == 1.0

    def to_json(self) -> dict:
        return {
            "agreement": self.agreement,
            "checked": self.checked,
            "exhaustive": self.exhaustive,
            "undefined": self.undefined,
            "failures": [f.to_json() for f in self.failures],
            "diagnosis": self.diagnosis,
            "fix": self.fix,
            "found_after": self.found_after,
        }

    def summary(self) -> str:
        how = "all inputs" if self.exhaustive else "Hypothesis-generated inputs"
        ok = round(self.agreement * self.checked)
        shown = math.floor(self.agreement * 10_000) / 10_000  # never round a failure up to 1
        line = f"agreement {shown:.4f} ({ok}/{self.checked}, {how})"
        if self.undefined:
            line += f"; {self.undefined} inputs skipped (rasp.evaluate raised)"
        if self.failures:
            f = self.failures[0]
            line += (
                f"; minimal failure {list(f.input)}: expected {list(f.expected)}, got {list(f.got)}"
            )
        if self.diagnosis:
            line += f"; {self.diagnosis}"
        if self.fix:
            line += f"; fix: {self.fix}"
        return line


def n_inputs(vocab_size: int, max_len: int) -> int:
    """Inputs of length 1..max_len over the vocabulary."""
    return sum(vocab_size**n for n in range(1, max_len + 1))


def all_inputs(vocab: Sequence[Any], max_len: int) -> Iterator[tuple[Any, ...]]:
    for n in range(1, max_len + 1):
        yield from product(vocab, repeat=n)


def _agrees(expected: Any, got: Any, numerical: bool, atol: float) -> bool:
    if expected is None:
        return True
    if numerical:
        return isinstance(got, float) and math.isfinite(got) and abs(got - expected) <= atol
    return got == expected


@functools.cache
def _sharing_evaluator_class(rasp: Any) -> type:
    class SharingEvaluator(rasp.DefaultRASPEvaluator):
        """``rasp.evaluate``'s evaluator, computing each shared subexpression once per input.

        The default evaluator re-evaluates a subexpression for every parent that reads it
        (shuffle_dyck3: ~100 evaluations per input for ~30 nodes); RASP expressions are
        pure functions of the input, so one result per (expression, input) is the same.
        """

        def __call__(self, program: Any, xs: list) -> list:
            self._memo: dict[int, Any] = {}
            return self.evaluate(program, xs)

        def evaluate(self, expr: Any, xs: Any) -> Any:
            key = id(expr)
            if key not in self._memo:
                self._memo[key] = super().evaluate(expr, xs)
            return self._memo[key]

    return SharingEvaluator


@dataclass(frozen=True)
class Verdict:
    """The model against ``rasp.evaluate`` on one input (BOS excluded).

    Attributes:
        expected: ``rasp.evaluate``'s output, None where the program is undefined.
        wrong: defined positions the model decodes wrongly.
        closeness: how near the worst agreeing position came to disagreeing, in [0, 1]:
            1 - the gap between the two largest logits (categorical), or the error over
            ``atol`` (numerical). A search climbs it towards failures.
    """

    input: tuple[Any, ...]
    expected: tuple[Any, ...] | None
    got: tuple[Any, ...]
    wrong: int
    closeness: float

    @property
    def failure(self) -> Failure | None:
        """The :class:`Failure`, when the model disagrees."""
        return Failure(self.input, self.expected, self.got) if self.wrong else None


class Oracle:
    """Compares the model with ``rasp.evaluate`` on batches of inputs.

    The model runs once per batch (grouped by length: Tracr models are bidirectional,
    so inputs cannot be padded); ``rasp.evaluate`` runs once per distinct input.
    """

    def __init__(self, model: TracrModel, program: Any, atol: float):
        from craft.tracr._deps import require_tracr

        self.evaluate = _sharing_evaluator_class(require_tracr().rasp)()
        self.model, self.program, self.atol = model, program, atol
        self.undefined: set[tuple[Any, ...]] = set()
        self._expected: dict[tuple[Any, ...], tuple[Any, ...] | None] = {}

    def expected(self, xs: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """``rasp.evaluate``'s output, or None where the program is undefined.

        RASP raises on some inputs by design (a categorical Aggregate that selects two
        different strings); those inputs are outside the program's domain and skipped.
        """
        if xs not in self._expected:
            try:
                self._expected[xs] = tuple(self.evaluate(self.program, list(xs)))
            except Exception:  # the user's Map/SequenceMap functions may raise anything
                self.undefined.add(xs)
                self._expected[xs] = None
        return self._expected[xs]

    def verdicts(self, inputs: Sequence[tuple[Any, ...]]) -> list[Verdict]:
        """One :class:`Verdict` per input, in input order."""
        out: list[Verdict | None] = [None] * len(inputs)
        seqs = [[self.model.bos, *x] for x in inputs]
        for idx, logits in self.model.logits_by_length(seqs):
            decoded = self.model.decode(logits)
            if self.model.categorical and logits.shape[-1] > 1:
                top = logits.double().topk(2, dim=-1).values  # [b, T, 2]
                near = (1.0 - (top[..., 0] - top[..., 1])).clamp(0, 1).tolist()  # [b][T]
            else:
                near = None
            for k, i in enumerate(idx):
                row = near[k] if near is not None else None
                out[i] = self._verdict(tuple(inputs[i]), tuple(decoded[k][1:]), row)
        return out  # type: ignore[return-value]

    def _verdict(self, xs: tuple[Any, ...], got: tuple[Any, ...], near: list | None) -> Verdict:
        """Compare one decoded output; ``near[t]`` is position t's categorical closeness."""
        e = self.expected(xs)
        if e is None:
            return Verdict(xs, None, got, 0, 0.0)
        numerical = not self.model.categorical
        wrong = sum(not _agrees(a, b, numerical, self.atol) for a, b in zip(e, got, strict=True))
        defined = [t for t, a in enumerate(e) if a is not None]
        if wrong or not defined:
            return Verdict(xs, e, got, wrong, float(bool(wrong)))
        if numerical:
            closeness = max(abs(got[t] - e[t]) for t in defined) / max(self.atol, 1e-30)
        else:
            closeness = max(near[t + 1] for t in defined) if near else 0.0  # BOS is column 0
        return Verdict(xs, e, got, 0, min(max(float(closeness), 0.0), 1.0))

    def failures(self, inputs: Sequence[tuple[Any, ...]]) -> list[Failure]:
        """The failing inputs among ``inputs``, in input order."""
        return [v.failure for v in self.verdicts(inputs) if v.wrong]


def failures_on(
    model: TracrModel, program: Any, inputs: Sequence[tuple[Any, ...]], atol: float = 1e-4
) -> list[Failure]:
    """The failures of ``model`` on the given inputs (BOS excluded)."""
    return Oracle(model, program, atol).failures(list(inputs))


@dataclass(frozen=True)
class Sampled:
    """What a sampler checked: ``inputs`` (the sample the agreement is measured on),
    ``failures`` (the minimal failing input first) and ``found_after``."""

    inputs: list[tuple[Any, ...]]
    failures: list[Failure]
    found_after: int | None = None


# (oracle, vocab, max_len, samples, seed) -> Sampled; verify.tracr_check provides one.
Sampler = Callable[[Oracle, list, int, int, int], Sampled]


def discretising_ops(program: Any) -> list[str]:
    """Operations compiled to Tracr's discretising MLPs (sensitive to mlp_exactness)."""
    from craft.tracr._deps import require_tracr

    rasp = require_tracr().rasp
    seen, out, stack = set(), [], [program]
    while stack:
        expr = stack.pop()
        if id(expr) in seen:
            continue
        seen.add(id(expr))
        stack.extend(expr.children)
        if isinstance(expr, rasp.SelectorWidth):
            out.append(f"SelectorWidth {expr.label!r}")
        elif isinstance(expr, rasp.Map) and rasp.is_numerical(expr.inner):
            out.append(f"numerical Map {expr.label!r}")
    return sorted(out)


def check(
    model: TracrModel,
    program: Any,
    vocab: Sequence[Any],
    max_len: int | None = None,
    *,
    limit: int = LIMIT,
    samples: int = 2000,
    atol: float = 1e-4,
    seed: int = 0,
    max_failures: int = 5,
    sampler: Sampler | None = None,
) -> CheckResult:
    """Check ``model`` against ``rasp.evaluate(program, ...)``.

    Args:
        model: the converted model.
        program: the RASP program it was compiled from.
        vocab: input tokens (BOS excluded).
        max_len: longest input checked (default: the model's).
        limit: check exhaustively when there are at most this many inputs.
        samples: otherwise, how many inputs the sampler checks.
        atol: tolerance for numerical outputs.
        seed: the sampler's seed (runs are reproducible).
        max_failures: failures kept in the result.
        sampler: checks a sample when there are more than ``limit`` inputs
            (``verify.tracr_check.check`` passes its Hypothesis search).

    Raises:
        CraftError: ``max_len`` beyond the model's; more than ``limit`` inputs and no
            sampler; ``rasp.evaluate`` raising on every checked input.
    """
    max_len = model.max_len if max_len is None else max_len
    if max_len > model.max_len:
        raise CraftError(
            f"cannot check inputs of length {max_len}: the model takes at most {model.max_len}",
            fix="check with a smaller max_len or recompile with a larger one",
        )
    vocab = sorted(set(vocab), key=repr)
    oracle = Oracle(model, program, atol)
    total = n_inputs(len(vocab), max_len)
    exhaustive = total <= limit
    found_after = None
    if exhaustive:
        inputs = list(all_inputs(vocab, max_len))
        failures = oracle.failures(inputs)
        failures.sort(key=lambda f: (len(f.input), f.input.__repr__()))
    elif sampler is None:
        raise CraftError(
            f"{total} inputs of length 1..{max_len}: over the exhaustive limit of {limit}",
            where=f"program {program.label!r}",
            fix="check with verify.tracr_check.check (a Hypothesis search) or `craft tracr`, "
            "or pass a smaller max_len",
        )
    else:
        sampled = sampler(oracle, vocab, max_len, samples, seed)
        inputs, failures, found_after = sampled.inputs, sampled.failures, sampled.found_after
    defined = [x for x in inputs if x not in oracle.undefined]
    if not defined:
        raise CraftError(
            f"rasp.evaluate raised on every checked input (e.g. {list(inputs[0])})",
            where=f"program {program.label!r}",
            fix="make the program's functions total on the vocabulary",
        )
    n_bad = len({f.input for f in failures} & set(defined))
    agreement = 1.0 - n_bad / len(defined)
    diagnosis = fix = None
    suspects: tuple[str, ...] = ()
    if failures:
        suspects = tuple(discretising_ops(program))
        exactness = model.model.meta.get("mlp_exactness", 100)
        if suspects:
            diagnosis = (
                f"{n_bad} inputs disagree; the program uses Tracr's discretising MLPs "
                f"({', '.join(suspects)}), which are inexact at mlp_exactness={exactness} "
                "on long inputs"
            )
            fix = f"recompile with mlp_exactness={int(exactness) * 10} (--mlp-exactness)"
        else:
            diagnosis = f"{n_bad} inputs disagree (no discretising MLP involved)"
    return CheckResult(
        agreement=agreement,
        checked=len(defined),
        undefined=len(inputs) - len(defined),
        exhaustive=exhaustive,
        failures=tuple(failures[:max_failures]),
        diagnosis=diagnosis,
        fix=fix,
        suspects=suspects,
        found_after=found_after,
    )
