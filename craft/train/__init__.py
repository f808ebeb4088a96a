"""Training on a spec's data: ``craft train``.

Modules: :mod:`~craft.train.config` (the frozen TrainConfig), :mod:`~craft.train.schedule`
(warm-up then cosine), :mod:`~craft.train.init` (random init, Q/K norm control),
:mod:`~craft.train.metrics` (per-rule excess loss), :mod:`~craft.train.loop` (the loop),
:mod:`~craft.train.plot` (loss curves), :mod:`~craft.train.cli` (the subcommand).
"""

from craft.train.config import TrainConfig
from craft.train.init import init_weights
from craft.train.loop import TrainResult, run_dir_for, train
from craft.train.metrics import excess_by_rule, make_eval_set
from craft.train.schedule import lr_at

__all__ = [
    "TrainConfig",
    "TrainResult",
    "excess_by_rule",
    "init_weights",
    "lr_at",
    "make_eval_set",
    "run_dir_for",
    "train",
]
