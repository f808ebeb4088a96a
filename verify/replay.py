"""Where ``craft check`` keeps its replay database, and what a stored failure is keyed by.

A verdict must depend only on (model bytes, spec, claims, seed, budget). The search is
seeded, so the same inputs give the same verdict; a replay database only makes a
failure quicker to find again. Keyed by claim name alone, it made the verdict depend on
what had been checked before in the same folder (another model's counterexample,
replayed, failed this one). So every entry is keyed by :func:`replay_key`, a digest of
all of the inputs, and the database lives in a user cache folder, never in the working
folder:

* ``$CRAFT_CACHE_DIR/replay`` when that variable is set;
* else ``$XDG_CACHE_HOME/craft/replay``;
* else ``~/.cache/craft/replay``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from craft.models import Transformer
from specs.model import Spec

CACHE_ENV = "CRAFT_CACHE_DIR"


def replay_dir() -> Path:
    """The user's replay folder (not created here; Hypothesis creates it on first use)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "replay"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "craft" / "replay"


def model_digest(model: Transformer) -> str:
    """sha256 of what the model computes: its config and every weight (name, dtype,
    shape, bytes), in name order. Two files with the same weights share a digest."""
    h = hashlib.sha256(json.dumps(model.cfg.__dict__, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def spec_digest(spec: Spec) -> str:
    """The spec's content hash (its resolved form), or of its repr when built in code."""
    return spec.sha256 or hashlib.sha256(repr(spec).encode()).hexdigest()


def replay_key(model_sha: str, spec: Spec, claim: object, **budget: object) -> str:
    """The database key of one claim's search: model digest, spec digest, the claim
    (its full description) and the budget (seed, examples, sweep)."""
    parts = {"model": model_sha, "spec": spec_digest(spec), "claim": repr(claim), **budget}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
