"""The scheduler object every schedule builds, and the batch-size lr scaling rules.

`ScheduledLR` sets each group's lr to its base lr times a multiplier of the step (and, for
one_cycle, the momentum or Adam's β1). Its `state_dict` holds only plain values (the step
counter and base lrs): the multiplier is rebuilt from the spec, so a resumed run continues the
same curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from trainlib.registries import SCHEDULES

_NOT_STATE = ("optimizer", "multiplier", "momentum")


class ScheduledLR(torch.optim.lr_scheduler.LRScheduler):
    """lr_g(t) = initial_lr_g · multiplier(t); momentum (β1 for Adam-type groups) = momentum(t)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        multiplier: Callable[[int], float],
        momentum: Callable[[int], float] | None = None,
    ) -> None:
        self.multiplier = multiplier
        self.momentum = momentum
        super().__init__(optimizer)

    def get_lr(self) -> list[float | torch.Tensor]:
        factor = self.multiplier(self.last_epoch)
        return [base * factor for base in self.base_lrs]

    def step(self, epoch: int | None = None) -> None:
        super().step(epoch)
        if self.momentum is None:
            return
        value = self.momentum(self.last_epoch)
        for group in self.optimizer.param_groups:
            if "betas" in group:
                group["betas"] = (value, *group["betas"][1:])
            elif "momentum" in group:
                group["momentum"] = value

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in _NOT_STATE}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.update({k: v for k, v in state_dict.items() if k not in _NOT_STATE})


class BatchScaling(BaseModel):
    """`train.scale_lr_with_batch`: multiply the optimizer's lr by the batch-size ratio.

    rule "linear": lr · B/B₀ (Goyal et al., "Accurate, Large Minibatch SGD", 2017; for SGD).
    rule "sqrt": lr · sqrt(B/B₀) (Malladi et al., "On the SDEs and Scaling Rules for Adaptive
    Gradient Algorithms", 2022; for Adam-type optimizers). The lr in the spec is the one tuned
    at `base_batch_size`; B is the data set's batch size.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: Literal["linear", "sqrt"]
    base_batch_size: int = Field(256, ge=1, le=1_000_000, description="B₀, where lr was tuned")


def batch_lr_factor(scaling: BatchScaling | None, batch_size: int) -> float:
    if scaling is None:
        return 1.0
    ratio = batch_size / scaling.base_batch_size
    return ratio if scaling.rule == "linear" else math.sqrt(ratio)


def scale_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Multiply every group's lr before any scheduler reads it as its base lr."""
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * factor
        if "base_lr" in group:  # optimizers that remember their construction-time lr
            group["base_lr"] = group["base_lr"] * factor


def build_scheduler(
    schedule: BaseModel | dict[str, Any],
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    scaling: BatchScaling | None = None,
    batch_size: int = 1,
) -> torch.optim.lr_scheduler.LRScheduler:
    """The loop's scheduler: the batch-size rule applied to the lrs, then the schedule."""
    scale_lr(optimizer, batch_lr_factor(scaling, batch_size))
    scheduler: torch.optim.lr_scheduler.LRScheduler = SCHEDULES.build(
        schedule, optimizer, total_steps
    )
    return scheduler
