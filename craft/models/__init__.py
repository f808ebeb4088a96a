"""The two model families (standard, tensor), their config, residual layouts and file I/O."""

from craft.models.config import ModelConfig
from craft.models.hooks import HookPoint, hooks, run_with_cache
from craft.models.io import load_model, read_header, save_model
from craft.models.layout import BOS_DIR, ONE, Direction, Layout
from craft.models.transformer import Transformer

__all__ = [
    "BOS_DIR",
    "ONE",
    "Direction",
    "HookPoint",
    "Layout",
    "ModelConfig",
    "Transformer",
    "hooks",
    "load_model",
    "read_header",
    "run_with_cache",
    "save_model",
]
