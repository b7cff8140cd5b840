"""μP (Yang et al., 2022): at the base width it is SP; doubling the width halves the hidden and
readout Adam lrs, doubles SGD's input lr, scales init std as 1/sqrt(fan_in) (hidden) and
1/fan_in (readout)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from trainlib.components.inits_base import (
    InitContext,
    InitResult,
    ParamScale,
    apply_init,
    split_groups,
)
from trainlib.data import DataInfo
from trainlib.optim.build import build_optimizer
from trainlib.registries import MODELS, SCHEDULES

BASE = 64
INPUTS = 64


def model_and_result(width: int, **settings: Any) -> tuple[nn.Sequential, InitResult]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(INPUTS, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.LayerNorm(width),
        nn.ReLU(),
        nn.Linear(width, 10),
    )
    spec = {"name": "mup", "base_width": BASE, **settings}
    return model, apply_init(spec, model, InitContext())


def group_lr(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> dict[str, Any]:
    for group in optimizer.param_groups:
        if any(p is param for p in group["params"]):
            return group
    raise AssertionError("parameter not in any group")


def lrs(
    width: int, opt_name: str, lr: float = 1e-2, wd: float = 0.0, **s: Any
) -> list[dict[str, Any]]:
    model, result = model_and_result(width, **s)
    opt = build_optimizer(
        {"name": opt_name, "lr": lr, "weight_decay": wd}, model, adjust_groups=result.after()
    )
    params = [model[0].weight, model[0].bias, model[2].weight, model[3].weight, model[5].weight]
    return [group_lr(opt, p) for p in params]


def test_base_width_is_standard_parametrization() -> None:
    for family, name in (("adam", "adamw"), ("sgd", "sgd")):
        _, result = model_and_result(BASE, optimizer=family)
        assert not result.scales
        assert [g["lr"] for g in lrs(BASE, name, optimizer=family)] == [1e-2] * 5


def test_adam_lrs_when_width_doubles() -> None:
    stem_w, stem_b, hidden, gain, head = lrs(2 * BASE, "adamw", wd=0.1)
    assert stem_w["lr"] == stem_b["lr"] == gain["lr"] == pytest.approx(1e-2)
    assert hidden["lr"] == pytest.approx(1e-2 / 2)
    assert hidden["lr_scale"] == pytest.approx(0.5)
    assert head["lr"] == pytest.approx(1e-2 / 2)
    # weight decay divided by the lr multiplier: lr·λ per parameter is unchanged
    assert hidden["weight_decay"] == pytest.approx(0.2)
    assert stem_w["weight_decay"] == pytest.approx(0.1)


def test_sgd_lrs_when_width_doubles() -> None:
    stem_w, stem_b, hidden, gain, head = lrs(2 * BASE, "sgd", optimizer="sgd")
    assert stem_w["lr"] == stem_b["lr"] == gain["lr"] == pytest.approx(2e-2)
    assert hidden["lr"] == pytest.approx(1e-2)
    assert head["lr"] == pytest.approx(1e-2 / 2)


def test_init_std_when_width_doubles() -> None:
    (small, _), (big, _) = model_and_result(4 * BASE), model_and_result(8 * BASE)
    for model, width in ((small, 4 * BASE), (big, 8 * BASE)):
        mult = width / BASE
        assert model[0].weight.std().item() == pytest.approx(1 / math.sqrt(INPUTS), rel=0.02)
        assert model[2].weight.std().item() == pytest.approx(1 / math.sqrt(width), rel=0.02)
        expected_head = 1 / math.sqrt(width * mult)
        assert model[5].weight.std().item() == pytest.approx(expected_head, rel=0.05)
    # doubling: input std unchanged, hidden std / sqrt(2), readout std / 2 (variance ∝ 1/fan_in²)
    ratio = big[5].weight.std().item() / small[5].weight.std().item()
    assert ratio == pytest.approx(0.5, rel=0.05)
    hidden = big[2].weight.std().item() / small[2].weight.std().item()
    assert hidden == pytest.approx(1 / math.sqrt(2), rel=0.02)


def test_zero_readout_and_lr_schedules_keep_the_multipliers() -> None:
    model, result = model_and_result(2 * BASE, zero_readout=True)
    assert torch.count_nonzero(model[5].weight) == 0
    opt = build_optimizer({"name": "adamw", "lr": 1.0}, model, adjust_groups=result.after())
    scheduler = SCHEDULES.build({"name": "exponential", "gamma": 0.5}, opt, 10)
    opt.step()
    scheduler.step()
    ratios = [g["lr"] / g["lr_scale"] for g in opt.param_groups]
    assert len(ratios) > 1
    assert ratios == pytest.approx([0.5] * len(ratios))


def test_regularizer_group_adjustment_runs_first() -> None:
    model, result = model_and_result(2 * BASE)
    calls: list[int] = []

    def first(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        calls.append(len(groups))
        return groups

    build_optimizer({"name": "adamw", "lr": 1.0}, model, adjust_groups=result.after(first))
    assert calls


def test_tied_embeddings_follow_the_readout_rule() -> None:
    info = DataInfo((8,), 11, "sequence", vocab_size=11)
    settings = {"d_model": 32, "n_layers": 1, "n_heads": 2, "max_len": 8, "tied_embeddings": True}
    model = MODELS.build({"name": "transformer", **settings}, info)
    result = apply_init({"name": "mup", "base_width": 16, "optimizer": "sgd"}, model, InitContext())
    shared = [s for s in result.scales if s.param is model.head.weight]
    assert [s.lr for s in shared] == [0.5]


def test_split_groups_keeps_group_settings_and_puts_the_unscaled_bucket_first() -> None:
    a, b, c = (nn.Parameter(torch.zeros(2)) for _ in range(3))
    groups = [
        {"params": [a, b], "lr": 0.1, "lr_scale": 2.0, "weight_decay": 0.01, "final_layer": False},
        {"params": [c], "lr": 0.3},
    ]
    scales = [ParamScale(a, 0.5, 2.0), ParamScale(c, 0.25, 4.0)]
    first, second, third = split_groups(groups, scales)
    assert first["params"] == [b] and first["lr"] == 0.1 and first["lr_scale"] == 2.0
    assert second["params"] == [a]
    assert (second["lr"], second["lr_scale"], second["weight_decay"]) == (0.05, 1.0, 0.02)
    assert second["final_layer"] is False and "names" not in second
    assert third["params"] == [c] and third["lr"] == 0.075 and "weight_decay" not in third


def output_change(width: int, init: dict[str, Any]) -> float:
    """Mean |Δ logits| after 3 Adam steps on one fixed batch."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(16, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 4)
    )
    result = apply_init(init, model, InitContext())
    opt = build_optimizer({"name": "adam", "lr": 1e-2}, model, adjust_groups=result.after())
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 16, generator=g), torch.randint(0, 4, (64,), generator=g)
    with torch.no_grad():
        before = model(x)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        return (model(x) - before).abs().mean().item()


def test_coordinate_check_output_updates_stay_constant_in_width_under_mup() -> None:
    """The paper's coordinate check: under SP (same init variance, one global Adam lr) the
    logits' update grows with width; under μP it does not."""
    mup = {"name": "mup", "base_width": 32}
    sp = {"name": "kaiming_normal", "nonlinearity": "linear"}  # μP's init at the base width
    assert output_change(32, mup) == pytest.approx(output_change(32, sp))
    mup_ratio = output_change(512, mup) / output_change(32, mup)
    sp_ratio = output_change(512, sp) / output_change(32, sp)
    assert 0.5 < mup_ratio < 2
    assert sp_ratio > 4
