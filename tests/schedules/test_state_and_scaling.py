"""Schedule state round trips, relative group lrs, and `train.scale_lr_with_batch`."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
from torch import nn

from tests.schedules.helpers import BASE_LR, optimizer, trace
from tests.schedules.test_formulas import EVERY
from trainlib import CollectingSink, parse_spec, train
from trainlib.components.schedules_runtime import BatchScaling, batch_lr_factor, build_scheduler
from trainlib.registries import SCHEDULES

TOTAL = 40


@pytest.mark.parametrize("name", sorted(EVERY))
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_resumed_schedule_continues_the_same_curve(name: str, kind: str) -> None:
    spec = {"name": name, "warmup_steps": 3, **EVERY[name]}
    opt = optimizer(kind)
    sched = SCHEDULES.build(spec, opt, TOTAL)
    trace(opt, sched, 17)
    saved_sched = json.loads(json.dumps(sched.state_dict()))  # plain values only
    saved_opt = opt.state_dict()
    rest = trace(opt, sched, TOTAL - 17)

    fresh = optimizer(kind)
    resumed = SCHEDULES.build(spec, fresh, TOTAL)  # before the optimizer state, as torch asks
    fresh.load_state_dict(saved_opt)
    resumed.load_state_dict(saved_sched)
    assert trace(fresh, resumed, TOTAL - 17) == rest


def test_groups_keep_their_ratio() -> None:
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.25}], momentum=0.9)
    sched = SCHEDULES.build({"name": "one_cycle", "warmup_steps": 2}, opt, 30)
    for _ in range(30):
        first, second = (g["lr"] for g in opt.param_groups)
        assert second == pytest.approx(0.25 * first)
        opt.step()
        sched.step()


def test_batch_factor_rules() -> None:
    linear = BatchScaling(rule="linear", base_batch_size=256)
    sqrt = BatchScaling(rule="sqrt", base_batch_size=256)
    assert batch_lr_factor(None, 1024) == 1.0
    assert batch_lr_factor(linear, 1024) == 4.0  # Goyal et al.: k times the batch, k times lr
    assert batch_lr_factor(linear, 64) == 0.25
    assert batch_lr_factor(sqrt, 1024) == 2.0  # Malladi et al.: sqrt(k) for Adam
    assert batch_lr_factor(sqrt, 512) == pytest.approx(math.sqrt(2))


def test_build_scheduler_scales_before_the_schedule_reads_base_lrs() -> None:
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": 5e-4}])
    scaling = BatchScaling(rule="sqrt", base_batch_size=128)
    sched = build_scheduler({"name": "linear_decay"}, opt, 10, scaling, 512)
    assert sched.base_lrs == pytest.approx([2e-3, 1e-3])
    assert [g["initial_lr"] for g in opt.param_groups] == pytest.approx([2e-3, 1e-3])
    for _ in range(5):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3, 5e-4])


def tiny(**train_settings: Any) -> dict[str, Any]:
    return {
        "data": {"name": "digits", "batch_size": 64},
        "model": {"name": "mlp", "hidden": [16]},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "train": {"steps": 4, "log_every": 2, "eval_every": 4, "device": "cpu", **train_settings},
    }


@pytest.mark.parametrize(("rule", "factor"), [("linear", 4.0), ("sqrt", 2.0)])
def test_training_uses_the_scaled_lr(rule: str, factor: float) -> None:
    spec = parse_spec(tiny(scale_lr_with_batch={"rule": rule, "base_batch_size": 16}))
    sink = CollectingSink()
    train(spec, sink)
    assert [v for _, v in sink.series("lr")] == pytest.approx([0.1 * factor] * 2)


def test_spec_validates_the_option() -> None:
    assert parse_spec(tiny()).train.scale_lr_with_batch is None
    for bad in ({"rule": "cubic"}, {"rule": "linear", "base_batch_size": 0}, {"base": 3}):
        with pytest.raises(ValueError, match="scale_lr_with_batch"):
            parse_spec(tiny(scale_lr_with_batch=bad))


def test_base_lr_constant_is_the_group_lr() -> None:
    opt = optimizer()
    SCHEDULES.build({"name": "constant"}, opt, 5)
    assert opt.param_groups[0]["lr"] == BASE_LR
