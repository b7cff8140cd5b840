"""Grokking (Power et al., 2022) on the grokking-modular.yaml job at a small budget: training
accuracy saturates first, validation accuracy reaches 0.95 hundreds of steps later."""

from __future__ import annotations

from bench.reproduce import first_step, grokking

SHORT = {"train": {"steps": 2500, "eval_every": 50, "log_every": 50}}


def test_validation_accuracy_follows_training_accuracy_much_later() -> None:
    result = grokking(SHORT)
    assert result.train_step is not None
    assert result.val_step is not None
    assert result.val_step - result.train_step >= 500


def test_first_step_finds_the_first_crossing() -> None:
    series = [(10, 0.2), (20, 0.96), (30, 0.5), (40, 0.99)]
    assert first_step(series, 0.95) == 20
    assert first_step(series, 0.995) is None
