"""The regularizer protocol: optional hooks the training loop calls in a fixed order.

Per job: `configure_model` (once: parametrizations, forward hooks), `param_groups` (once: adjust
the optimizer's groups). Per step: `transform_batch` (mixup and kin; may return soft targets),
`penalty` (a term added to the loss; its value is logged as `reg/<name>`), `train_step` (a step
strategy that owns both passes: AWP, RWP), `after_step` (EMA, SWA, shrink-and-perturb). Averaging
regularizers expose `evaluation_model()`; every stateful one implements `state_dict` /
`load_state_dict` so that a resumed run continues bit-identically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from trainlib.data import TASKS, DataInfo, Task

ParamGroups = list[dict[str, Any]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class RegularizerSettings(BaseModel):
    """Base of every regularizer's settings. ClassVars describe what the spec validator checks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: owns the forward/backward passes (at most one step strategy per job, SAM included)
    step_strategy: ClassVar[bool] = False
    #: turns hard labels into soft targets (the loss must accept soft targets)
    soft_targets: ClassVar[bool] = False
    #: the data tasks it can train on (DataInfo.task)
    tasks: ClassVar[frozenset[Task]] = TASKS


def task_mismatch(settings: BaseModel, task: Task) -> str | None:
    """Why a regularizer cannot train on data of this task; None when it can."""
    tasks: frozenset[Task] = getattr(settings, "tasks", TASKS)
    if task in tasks:
        return None
    name = getattr(settings, "name", type(settings).__name__)
    return (
        f"regularizer {name} works on {' or '.join(sorted(tasks))} data, and this data set is a "
        f"{task} task; remove the regularizer or choose another data set"
    )


@dataclass(frozen=True)
class SetupContext:
    """What a regularizer may need when it is built."""

    info: DataInfo
    total_steps: int
    steps_per_epoch: int
    batch_size: int
    train_size: int
    seed: int
    #: another finished job of the same team -> (its resolved spec, its final checkpoint)
    resolve_job: Callable[[str], tuple[dict[str, Any], Path]] | None = None


@dataclass(frozen=True)
class PenaltyContext:
    model: nn.Module
    x: torch.Tensor
    logits: torch.Tensor
    targets: torch.Tensor  # class indices, or soft targets (rows summing to 1)
    indices: torch.Tensor  # the samples' positions in the training set (per-sample state)
    step: int
    base_loss: torch.Tensor


class Regularizer:
    """A no-op for every hook; subclasses override what they use."""

    name: str = "regularizer"
    settings: RegularizerSettings | None = None

    def configure_model(self, model: nn.Module) -> None:
        """Once, before the optimizer is built (parametrizations, forward hooks, θ₀ copies)."""

    def param_groups(self, groups: ParamGroups) -> ParamGroups:
        """Once: adjust the optimizer's parameter groups."""
        return groups

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def penalty(self, ctx: PenaltyContext) -> torch.Tensor | None:
        """A term added to the loss (already weighted by the regularizer's strength)."""
        return None

    def train_step(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        x: torch.Tensor,
        y: torch.Tensor,
        compute_loss: LossFn,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step strategies override this (only when settings.step_strategy is True)."""
        raise NotImplementedError

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
        """After the optimizer's update."""

    def evaluation_model(self) -> nn.Module | None:
        """An averaged model to evaluate beside the raw one (EMA, SWA, LAWA), if any."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{self.name} keeps no state, got {sorted(state)}")
