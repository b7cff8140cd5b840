"""How the loop scores each kind of data task (classification, sequence, regression).

Losses take (batch, classes) logits; a sequence model gives (batch, T, classes), so its loss
sees every position as one sample. Accuracy counts labels, one per position for sequences, and
regression has none.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainlib.components.loss_robust import Huber, Mse
from trainlib.data import DataInfo
from trainlib.errors import DataError


class PerPosition(nn.Module):
    """The wrapped loss on (B·T, C) logits and (B·T,) labels (or (B·T, C) soft targets):
    the mean over every position, as next-token training takes it."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        flat_target = target.flatten(0, 1) if target.ndim == logits.ndim else target.flatten()
        out: torch.Tensor = self.inner(logits.flatten(0, 1), flat_target)
        return out


class OnValues(nn.Module):
    """Regression: the error of the outputs against float targets themselves.

    The classification forms of `mse` and `huber` read a float target as class probabilities
    (their expected one-hot loss): right gradients, a shifted value. Here the value is the
    plain mean squared (or Huber) error.
    """

    def __init__(self, inner: Mse | Huber) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if isinstance(self.inner, Huber):
            return F.huber_loss(outputs, target, delta=self.inner.delta)
        return F.mse_loss(outputs, target)


def loss_for_task(loss_fn: nn.Module, info: DataInfo) -> nn.Module:
    """The loss as the task needs it: per position for sequences, on values for regression."""
    if info.task == "sequence":
        return PerPosition(loss_fn)
    if info.task == "regression":
        if not isinstance(loss_fn, Mse | Huber):
            raise DataError(
                f"this data set is a regression task: use loss mse or huber, not "
                f"{type(loss_fn).__name__}"
            )
        return OnValues(loss_fn)
    return loss_fn


def has_accuracy(info: DataInfo) -> bool:
    return info.task != "regression"


def count_correct(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(correct predictions, labels counted), still on the device; every position counts."""
    return (logits.argmax(-1) == labels).sum(), labels.numel()
