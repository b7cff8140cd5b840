"""Data-independent inits: each layer's weight statistics against the closed-form values."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch import nn

from trainlib.components.inits_base import InitContext, apply_init

FAN_IN, FAN_OUT = 400, 600  # 240k entries: sample std within about 0.3% of the truth


def layer_after(init: dict[str, object]) -> nn.Linear:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FAN_IN, FAN_OUT))
    nn.init.uniform_(model[0].bias, 1, 2)  # must come back zeroed
    result = apply_init(init, model, InitContext())
    assert not result.scales
    layer = model[0]
    assert isinstance(layer, nn.Linear)
    assert torch.count_nonzero(layer.bias) == 0
    return layer


@pytest.mark.parametrize(
    ("init", "std"),
    [
        ({"name": "kaiming_normal"}, math.sqrt(2 / FAN_IN)),
        ({"name": "kaiming_normal", "mode": "fan_out"}, math.sqrt(2 / FAN_OUT)),
        ({"name": "kaiming_normal", "nonlinearity": "linear"}, math.sqrt(1 / FAN_IN)),
        ({"name": "kaiming_uniform"}, math.sqrt(2 / FAN_IN)),
        ({"name": "xavier_uniform"}, math.sqrt(2 / (FAN_IN + FAN_OUT))),
        ({"name": "xavier_uniform", "gain": 2.0}, 2 * math.sqrt(2 / (FAN_IN + FAN_OUT))),
    ],
)
def test_variance_scaling_inits(init: dict[str, object], std: float) -> None:
    w = layer_after(init).weight.detach().double()
    assert w.mean().item() == pytest.approx(0.0, abs=0.01 * std)
    assert w.std().item() == pytest.approx(std, rel=0.01)
    if init["name"] != "kaiming_normal":  # uniform on [-b, b] with b = sqrt(3)·std
        bound = math.sqrt(3) * std
        assert w.abs().max().item() <= bound
        assert w.abs().max().item() > 0.99 * bound


def test_trunc_normal_matches_scipy_truncated_normal() -> None:
    w = layer_after({"name": "trunc_normal", "std": 0.05, "truncate_at": 1.5}).weight.double()
    ref = stats.truncnorm(-1.5, 1.5, loc=0.0, scale=0.05)
    assert w.abs().max().item() <= 1.5 * 0.05
    assert w.std().item() == pytest.approx(ref.std(), rel=0.01)
    # the fraction beyond one std, a shape check besides the variance
    beyond = (w.abs() > 0.05).double().mean().item()
    assert beyond == pytest.approx(2 * ref.sf(0.05), abs=0.005)


def test_orthogonal_rows_are_orthonormal() -> None:
    w = layer_after({"name": "orthogonal", "gain": 1.0}).weight.detach().double()
    # 600 x 400: the columns are orthonormal
    assert torch.allclose(w.T @ w, torch.eye(FAN_IN, dtype=torch.float64), atol=1e-5)


def test_default_keeps_torch_init() -> None:
    torch.manual_seed(3)
    model = nn.Linear(5, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    apply_init({"name": "default"}, model, InitContext())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_conv_weights_use_their_fan_in() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(32, 256, 5))
    apply_init({"name": "kaiming_normal"}, model, InitContext())
    fan_in = 32 * 5 * 5
    assert model[0].weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.01)
