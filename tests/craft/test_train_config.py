"""craft.train config validation and the learning-rate schedule."""

from __future__ import annotations

import math

import pytest

import specs
from craft.train.config import TrainConfig
from craft.train.schedule import check_schedule, lr_at, lr_factor
from specs.errors import CraftError

BAD = [
    ({"steps": 0}, "steps"),
    ({"batch": -1}, "batch"),
    ({"lr": 0.0}, "lr"),
    ({"lr": float("nan")}, "lr"),
    ({"warmup": 100, "steps": 100}, "warmup"),
    ({"warmup": -1}, "warmup"),
    ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
    ({"family": "rnn"}, "family"),
    ({"positions": "rotary", "family": "standard"}, "positions"),
    ({"positions": "rotary", "family": "tensor", "d_head": 3}, "d_head"),
    ({"d_model": 10, "n_heads": 4}, "d_head"),
    ({"device": "tpu"}, "device"),
    ({"qk_control": "norm"}, "qk_control"),
    ({"qk_max_norm": -1.0}, "qk_max_norm"),
    ({"grad_clip": -0.1}, "grad_clip"),
    ({"betas": (0.9, 1.0)}, "betas"),
]


@pytest.mark.parametrize(("changes", "field"), BAD, ids=[f for _, f in BAD])
def test_bad_config_is_one_line_craft_error(changes: dict, field: str) -> None:
    with pytest.raises(CraftError) as err:
        TrainConfig(**changes)
    message = str(err.value)
    assert "\n" not in message
    assert field in message and "fix:" in message


def test_resolve_fills_defaults_from_spec() -> None:
    spec = specs.load_spec(specs.library_path("bigram"))  # max_len 16
    cfg = TrainConfig(family="tensor", steps=1000).resolve(spec)
    assert cfg.length == spec.max_len
    assert cfg.warmup == 50 and cfg.eval_every == 20
    assert cfg.positions == "rotary" and cfg.d_head == 16
    assert cfg.qk_max_norm == pytest.approx(2.0 * math.sqrt(16))
    assert TrainConfig().resolve(spec).positions == "learned"


def test_length_above_max_len_is_rejected() -> None:
    spec = specs.load_spec(specs.library_path("bigram"))
    with pytest.raises(CraftError, match="max_len"):
        TrainConfig(length=spec.max_len + 1).resolve(spec)


SCHEDULES = [(100, 10, 0.1), (5000, 250, 0.0), (7, 0, 0.5), (2, 1, 0.1), (1, 0, 0.1)]


@pytest.mark.parametrize(("steps", "warmup", "floor"), SCHEDULES)
def test_lr_never_exceeds_peak_and_decays_monotonically(steps, warmup, floor) -> None:
    peak = 3e-3
    lrs = [lr_at(s, peak, steps, warmup, floor) for s in range(steps)]
    assert all(0 <= lr <= peak * (1 + 1e-12) for lr in lrs)
    assert all(a <= b + 1e-15 for a, b in zip(lrs[:warmup], lrs[1 : warmup + 1], strict=False))
    after = lrs[max(0, warmup - 1) :]
    assert all(b <= a + 1e-15 for a, b in zip(after, after[1:], strict=False))
    assert max(lrs) == pytest.approx(peak)
    if steps > warmup + 1:
        assert lrs[-1] == pytest.approx(peak * floor, abs=1e-12)


def test_warmup_is_linear() -> None:
    assert lr_factor(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(4, 100, 10, 0.1) == pytest.approx(0.5)
    assert lr_factor(9, 100, 10, 0.1) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("steps", "warmup", "floor"), [(10, 10, 0.1), (10, 20, 0.1), (0, 0, 0.1), (10, 1, -0.1)]
)
def test_bad_schedules_raise(steps, warmup, floor) -> None:
    with pytest.raises(CraftError):
        check_schedule(steps, warmup, floor)
