"""The two model families (standard, tensor), their config, residual layouts, component
records and file I/O."""

from craft.models.components import ComponentKind, ComponentRecord, component_records
from craft.models.config import ModelConfig
from craft.models.hooks import HookPoint, hooks, run_with_cache
from craft.models.io import load_model, read_header, save_model
from craft.models.layout import BOS_DIR, ONE, Direction, Layout
from craft.models.transformer import Transformer

__all__ = [
    "BOS_DIR",
    "ONE",
    "ComponentKind",
    "ComponentRecord",
    "Direction",
    "HookPoint",
    "Layout",
    "ModelConfig",
    "Transformer",
    "component_records",
    "hooks",
    "load_model",
    "read_header",
    "run_with_cache",
    "save_model",
]
