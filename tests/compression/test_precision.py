"""Mixed precision: autocast types, the fp16 gradient scaler (exact unscaling, skipped overflow
steps, state round trip), step strategies under bf16, and finite digits runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.compression.helpers import digits_job, run
from trainlib.precision import Precision
from trainlib.spec import SpecError, parse_spec
from trainlib.step import train_step

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("name", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)]
)
def test_autocast_type(name: str, dtype: torch.dtype) -> None:
    precision = Precision(name, CPU)
    with precision.autocast():
        out = nn.Linear(4, 3)(torch.randn(2, 4))
    assert out.dtype == dtype
    assert (precision.scaler is not None) == (name == "fp16")


def sgd_model(seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def test_scaled_step_equals_plain_step() -> None:
    """Loss scaling by a power of two, then unscaling, leaves SGD's update exactly unchanged."""
    x, y = torch.randn(10, 6), torch.randint(0, 3, (10,))
    plain, plain_opt = sgd_model(0)
    scaled, scaled_opt = sgd_model(0)
    scaler = Precision("fp16", CPU).scaler
    for _ in range(3):
        train_step(plain, plain_opt, x, y, F.cross_entropy)
        train_step(scaled, scaled_opt, x, y, F.cross_entropy, scaler=scaler)
    for a, b in zip(plain.parameters(), scaled.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_overflow_skips_the_step_and_halves_the_scale() -> None:
    model, opt = sgd_model(1)
    before = [p.detach().clone() for p in model.parameters()]
    precision = Precision("fp16", CPU)
    assert precision.scaler is not None
    scale = precision.scaler.get_scale()

    def overflowing(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y) * torch.tensor(float("inf"))

    train_step(
        model,
        opt,
        torch.randn(4, 6),
        torch.randint(0, 3, (4,)),
        overflowing,
        scaler=precision.scaler,
    )
    for p, q in zip(model.parameters(), before, strict=True):
        assert torch.equal(p.detach(), q)
    assert precision.scaler.get_scale() == scale / 2


def test_scaler_state_round_trip() -> None:
    precision = Precision("fp16", CPU)
    assert precision.scaler is not None
    model, opt = sgd_model(2)
    x, y = torch.randn(4, 6), torch.randint(0, 3, (4,))
    train_step(model, opt, x, y, F.cross_entropy, scaler=precision.scaler)
    precision.scaler.update(new_scale=1024.0)
    restored = Precision("fp16", CPU)
    restored.load_state_dict(precision.state_dict())
    assert restored.scaler is not None and restored.scaler.get_scale() == 1024.0
    assert Precision("bf16", CPU).state_dict() == {}
    with pytest.raises(ValueError, match="keeps no state"):
        Precision("fp32", CPU).load_state_dict(precision.state_dict())


def test_two_pass_optimizer_needs_bf16() -> None:
    raw = digits_job(precision="fp16") | {
        "optimizer": {"name": "sam", "base": {"name": "sgd", "lr": 0.1}}
    }
    with pytest.raises(SpecError, match=r"fp16 loss scaling needs the plain step.*use bf16"):
        parse_spec(raw)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_digits_runs_stay_finite(precision: str) -> None:
    result, sink = run(digits_job(steps=60, precision=precision))
    assert result.final_metrics["val_accuracy"] > 0.8
    assert len(sink.series("loss")) == 6


def test_sam_trains_under_bf16() -> None:
    raw = digits_job(steps=40, precision="bf16") | {
        "optimizer": {"name": "sam", "base": {"name": "sgd", "lr": 0.1, "momentum": 0.9}}
    }
    result, _ = run(raw)
    assert result.final_metrics["val_accuracy"] > 0.7


def test_weight_perturbation_strategy_trains_under_bf16() -> None:
    result, _ = run(digits_job(steps=40, precision="bf16") | {"regularizers": [{"name": "awp"}]})
    assert result.final_metrics["val_accuracy"] > 0.7


def test_bitnet_and_pruning_together_under_bf16() -> None:
    raw = digits_job(
        steps=60,
        precision="bf16",
        quantization={"name": "bitnet158", "scale": "absmedian"},
        pruning={"name": "n_m"},
    )
    result, _ = run(raw)
    assert result.final_metrics["sparsity"] == 0.5
