"""Learning-rate traces of a registered schedule and of a torch scheduler, step by step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from trainlib.registries import SCHEDULES

BASE_LR = 0.5


def optimizer(kind: str = "sgd", lr: float = BASE_LR) -> torch.optim.Optimizer:
    param = nn.Parameter(torch.zeros(1))
    if kind == "adam":
        return torch.optim.Adam([param], lr=lr)
    return torch.optim.SGD([param], lr=lr, momentum=0.9)


def trace(
    opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler, steps: int
) -> list[tuple[float, float]]:
    """(lr, momentum or β1) in effect at optimizer steps 0 .. steps-1."""
    out = []
    for _ in range(steps):
        group = opt.param_groups[0]
        out.append((group["lr"], group["betas"][0] if "betas" in group else group["momentum"]))
        opt.step()
        sched.step()
    return out


def ours(
    schedule: dict[str, Any], total: int, kind: str = "sgd", extra: int = 0
) -> list[tuple[float, float]]:
    """Built for `total` steps, traced for `total + extra`."""
    opt = optimizer(kind)
    return trace(opt, SCHEDULES.build(schedule, opt, total), total + extra)


def torchs(
    make: Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler],
    total: int,
    kind: str = "sgd",
) -> list[tuple[float, float]]:
    opt = optimizer(kind)
    return trace(opt, make(opt), total)


def lrs(schedule: dict[str, Any], total: int) -> list[float]:
    """Multipliers of the base lr at steps 0 .. total (one past the end)."""
    return [lr / BASE_LR for lr, _ in ours(schedule, total, extra=1)]
