"""Errors the loop raises for a user's job, each with a failure reason the service records."""

from __future__ import annotations


class TrainingError(Exception):
    reason = "internal_error"


class Diverged(TrainingError):
    reason = "diverged"

    def __init__(self, step: int, value: float) -> None:
        self.step = step
        super().__init__(
            f"training loss became {value} by step {step}; lower the learning rate, "
            "add warmup or gradient clipping (train.grad_clip_norm)"
        )


class DataError(TrainingError):
    reason = "data_error"
