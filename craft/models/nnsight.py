"""nnsight for craft's models, with several invokes batched in one trace.

``nnsight.NNsight`` wraps any ``nn.Module``, but its base class refuses to batch two
invokes (a clean and a corrupt prompt in one forward pass). :func:`nnsight_model`
returns a small subclass that knows craft's input, token ids ``[B, T]`` (or ``[T]``),
and stacks the invokes along the batch: inputs of different lengths are right-padded
with token 0, which a causal model's real positions never see (a bidirectional Tracr
model would: its invokes must have one length).

Example, patching head L1H0 from a clean prompt into a corrupt one of the same length
in one forward pass (``hook_result`` is ``[B, T, H, D]``, each head's write to the
residual; the barrier makes the clean invoke read the head before the corrupt one
writes it)::

    from craft.models.nnsight import nnsight_model

    lm = nnsight_model(model)
    with lm.trace() as tracer:
        barrier = tracer.barrier(2)
        with tracer.invoke(clean):  # token ids [B, T]
            head = lm.blocks[1].attn.hook_result.output[:, :, 0]
            barrier()
        with tracer.invoke(corrupt):
            barrier()
            lm.blocks[1].attn.hook_result.output[:, :, 0] = head
            patched = lm.output.save()  # [B, T, O]

Every hook point of :mod:`craft.models.transformer` is a module, so it is an envoy:
read ``.output``, assign to it, ``.save()`` it, or take gradients through it.
"""

from __future__ import annotations

from typing import Any

import torch

from craft.models.transformer import Transformer
from specs.errors import CraftError

try:
    from nnsight import NNsight
except ImportError:  # an optional dependency: nnsight_model says how to install it
    NNsight = None  # type: ignore[assignment,misc]


def _ids(x: Any) -> torch.Tensor:
    """One invoke's input as token ids ``[B, T]``."""
    t = torch.as_tensor(x)
    if t.dtype not in (torch.int64, torch.int32) or t.dim() not in (1, 2):
        raise CraftError(
            f"an invoke's input is a {tuple(t.shape)} {t.dtype} tensor",
            where="nnsight invoke",
            fix="pass token ids, [T] or [B, T] integers",
        )
    return (t[None] if t.dim() == 1 else t).long()


def _batch_invokes(model: Transformer, invokes: list[tuple]) -> tuple[tuple, dict]:
    """Invokes' token ids stacked along the batch, right-padded to one length."""
    parts = [_ids(args[0] if args else kwargs["tokens"]) for args, kwargs in invokes]
    width = max(p.shape[1] for p in parts)
    if not model.cfg.causal and any(p.shape[1] != width for p in parts):
        raise CraftError(
            "invokes of different lengths for a bidirectional model (padding would be seen)",
            where="nnsight trace",
            fix="give every invoke of one trace the same length",
        )
    padded = [torch.nn.functional.pad(p, (0, width - p.shape[1])) for p in parts]
    return (torch.cat(padded),), {}


def nnsight_model(model: Transformer) -> Any:
    """``model`` wrapped in nnsight, batching any number of invokes in one trace.

    Raises:
        CraftError: nnsight is not installed.
    """
    if NNsight is None:
        raise CraftError("nnsight is not installed", fix="pip install 'nnsight>=0.8.1,<0.9'")

    class CraftNNsight(NNsight):
        """NNsight whose invokes are token ids, stacked into one batch."""

        def _batch_size(self, *inputs: Any, **kwargs: Any) -> int:
            given = inputs[0] if inputs else kwargs.get("tokens")
            return 0 if given is None else _ids(given).shape[0]

        def _batch(self, invokes: list[tuple], fn: Any) -> tuple:
            if not invokes:
                return (), {}
            return _batch_invokes(model, invokes)

    return CraftNNsight(model)
