"""Learning-rate schedules, as multipliers of the optimizer's base learning rate."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from pydantic import BaseModel, ConfigDict, Field

from trainlib.registries import SCHEDULES

Multiplier = Callable[[int], float]


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    warmup_steps: int = Field(0, ge=0, description="linear warmup from 0 over this many steps")


class ConstantSettings(_Base):
    """Constant learning rate after an optional linear warmup."""


class CosineSettings(_Base):
    """Cosine decay to `min_lr_ratio` x lr, after an optional linear warmup."""

    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    cycles: int = Field(1, ge=1, description="number of cosine cycles (restarts between them)")


def _with_warmup(warmup_steps: int, after: Multiplier) -> Multiplier:
    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return after(step - warmup_steps)

    return multiplier


def constant_multiplier(s: ConstantSettings, total_steps: int) -> Multiplier:
    return _with_warmup(s.warmup_steps, lambda _step: 1.0)


def cosine_multiplier(s: CosineSettings, total_steps: int) -> Multiplier:
    decay_steps = max(1, total_steps - s.warmup_steps)
    cycle_len = decay_steps / s.cycles

    def after(step: int) -> float:
        t = 1.0 if step >= decay_steps else (step % cycle_len) / cycle_len
        return s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return _with_warmup(s.warmup_steps, after)


def _lambda_lr(
    optimizer: torch.optim.Optimizer, fn: Multiplier
) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


@SCHEDULES.register("constant", settings=ConstantSettings, summary="constant lr, optional warmup")
def build_constant(
    s: ConstantSettings, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    return _lambda_lr(optimizer, constant_multiplier(s, total_steps))


@SCHEDULES.register(
    "cosine",
    settings=CosineSettings,
    summary="cosine decay with linear warmup and restarts",
    paper="SGDR: Stochastic Gradient Descent with Warm Restarts (Loshchilov & Hutter, 2017)",
)
def build_cosine(
    s: CosineSettings, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    return _lambda_lr(optimizer, cosine_multiplier(s, total_steps))
