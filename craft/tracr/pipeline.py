"""Compile, check and (when the check fails for a known reason) try the fix: the driver.

:func:`compile_checked` is what ``craft tracr`` and the examples run: the fast path,
then the agreement check; when the failure involves Tracr's discretising MLPs it
recompiles with ten times the ``mlp_exactness`` and re-checks the failing inputs, so
the message can say whether the fix works rather than only suggest it. The check is
passed in: ``verify.tracr_check.check`` searches with Hypothesis where there are too
many inputs to check them all (``craft`` may not import ``verify``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from craft.tracr import agreement
from craft.tracr.agreement import CheckResult, failures_on
from craft.tracr.fast import from_rasp
from craft.tracr.model import TracrModel

MAX_MLP_EXACTNESS = 1e6
"""The largest ``mlp_exactness`` that float32 carries. A discretising MLP computes
``L * (x - b)`` for its breakpoints ``b`` and reads the unit step between two ReLUs; with
``L * |x|`` near float32's 2**24 = 1.7e7 the rounding error of each term reaches that
unit. Measured on ``lib:sort`` at max_len 3: 1e4 and 1e6 agree on every input, 1e8
agrees on 36% (``craft tracr lib:sort --max-len 3 --mlp-exactness 1e8``)."""


def confirm_fix(
    program: Any,
    vocab: set,
    max_len: int,
    result: CheckResult,
    *,
    mlp_exactness: float,
    compiler_bos: str = "BOS",
) -> CheckResult:
    """Recompile with ``10 * mlp_exactness`` and say whether the failing inputs then pass."""
    if not result.failures or not result.suspects:
        return result
    higher = mlp_exactness * 10
    if higher > MAX_MLP_EXACTNESS:
        return dataclasses.replace(
            result,
            fix=f"mlp_exactness is at float32's limit ({mlp_exactness:g}; at most "
            f"{MAX_MLP_EXACTNESS:g}): compile a shorter --max-len",
        )
    fixed = from_rasp(program, vocab, max_len, mlp_exactness=higher, compiler_bos=compiler_bos)
    still = failures_on(fixed, program, [f.input for f in result.failures])
    verdict = f"recompile with mlp_exactness={higher:g} (--mlp-exactness {higher:g}): " + (
        f"the {len(result.failures)} failing inputs shown then pass"
        if not still
        else f"{len(still)} of the failing inputs still fail"
    )
    return dataclasses.replace(result, fix=verdict)


def compile_checked(
    program: Any,
    vocab: set,
    max_len: int,
    *,
    mlp_exactness: float = 100,
    compiler_bos: str = "BOS",
    samples: int = 2000,
    seed: int = 0,
    check: Callable[..., CheckResult] = agreement.check,
) -> tuple[TracrModel, CheckResult]:
    """Fast-path compile, check against ``rasp.evaluate``, confirm the fix on failure.

    ``check(model, program, vocab, samples=..., seed=...)`` is the agreement check:
    :func:`craft.tracr.agreement.check` (exhaustive only) unless one is passed in.
    """
    model = from_rasp(
        program, vocab, max_len, mlp_exactness=mlp_exactness, compiler_bos=compiler_bos
    )
    result = check(model, program, vocab, samples=samples, seed=seed)
    result = confirm_fix(
        program, vocab, max_len, result, mlp_exactness=mlp_exactness, compiler_bos=compiler_bos
    )
    return model, result
