"""Tracr (RASP) programs into PyTorch: compile, convert, check.

* :func:`from_rasp` - the fast path: RASP -> Tracr's graph and craft stages -> torch,
  skipping Haiku assembly; ``family="tensor"`` builds a bilinear (tensor-family) model
  for programs in the polynomial fragment (:mod:`craft.tracr.tensor`).
* :func:`from_assembled` - the slow path: an assembled Tracr model -> torch.
* :func:`check` - the converted model against ``rasp.evaluate``, on every input up to
  100,000 of them; beyond that it takes a sampler, and ``verify.tracr_check.check``
  passes the Hypothesis search that ``craft check`` uses (shrinking, replay database).

Every function returns or takes a :class:`TracrModel` (the torch ``Transformer`` plus
Tracr's encodings; ``.run(["BOS", "a"])`` decodes like Tracr). Tracr itself is imported
on first use only (install the ``tracr`` extra).
"""

from craft.tracr.agreement import CheckResult, Failure, check
from craft.tracr.assembled import from_assembled
from craft.tracr.fast import from_rasp
from craft.tracr.model import TracrModel

__all__ = ["CheckResult", "Failure", "TracrModel", "check", "from_assembled", "from_rasp"]
