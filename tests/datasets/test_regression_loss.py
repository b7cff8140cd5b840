"""Regression jobs are scored by the plain squared (or Huber) error of outputs and targets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainlib.data import DataInfo
from trainlib.errors import DataError
from trainlib.registries import LOSSES
from trainlib.scoring import loss_for_task

REGRESSION = DataInfo((4,), 3, task="regression")


def test_mse_on_values_is_the_mean_squared_error() -> None:
    torch.manual_seed(0)
    outputs, target = torch.randn(8, 3), torch.randn(8, 3) * 2
    loss = loss_for_task(LOSSES.build({"name": "mse"}), REGRESSION)
    expected = ((outputs - target) ** 2).mean()
    assert torch.allclose(loss(outputs, target), expected)
    # The classification form would read the targets as probabilities: another value.
    assert not torch.allclose(LOSSES.build({"name": "mse"})(outputs, target.softmax(-1)), expected)


def test_huber_on_values_keeps_its_delta() -> None:
    outputs, target = torch.tensor([[0.0, 5.0]]), torch.tensor([[0.5, 0.0]])
    loss = loss_for_task(LOSSES.build({"name": "huber", "delta": 2.0}), REGRESSION)
    assert torch.allclose(loss(outputs, target), F.huber_loss(outputs, target, delta=2.0))
    # 0.5²/2 = 0.125 and 2 (5 − 1) = 8, averaged: 4.0625
    assert loss(outputs, target).item() == pytest.approx(4.0625)


def test_a_classification_loss_on_regression_is_refused() -> None:
    with pytest.raises(DataError, match="regression task: use loss mse or huber"):
        loss_for_task(LOSSES.build({"name": "cross_entropy"}), REGRESSION)
