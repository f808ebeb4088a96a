"""Hook points: identity modules at every place a researcher wants to read or patch.

Register an ordinary ``module.register_forward_hook`` on any ``HookPoint``; a hook that
returns a tensor replaces the activation (that is how ablation and patching work).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


class HookPoint(nn.Identity):
    """An identity layer that exists to be hooked."""


@contextmanager
def hooks(model: nn.Module, fns: dict[str, Callable]) -> Iterator[None]:
    """Temporarily attach forward hooks by module name: ``{"blocks.0.attn.hook_pattern": fn}``.

    ``fn(module, inputs, output)`` may return a replacement output.
    """
    modules = dict(model.named_modules())
    handles = []
    try:
        for name, fn in fns.items():
            if name not in modules:
                from specs.errors import CraftError

                points = [n for n in modules if n.split(".")[-1].startswith("hook_")]
                raise CraftError(
                    f"model has no hook point {name!r}",
                    fix=f"use one of its {len(points)} hook points, e.g. {points[:3]}",
                )
            handles.append(modules[name].register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def run_with_cache(model: nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Forward pass that also returns every HookPoint's activation by name."""
    cache: dict[str, torch.Tensor] = {}

    def save(name):
        def fn(_m, _i, out):
            cache[name] = out.detach()

        return fn

    names = {n: save(n) for n, m in model.named_modules() if isinstance(m, HookPoint)}
    with hooks(model, names):
        logits = model(tokens)
    return logits, cache
