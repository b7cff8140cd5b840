"""`build_optimizer(spec, params)`: settings, parameter groups, optimizer, gradient clipping."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from pydantic import BaseModel
from torch import nn

from trainlib.optim.base import OptimizerSettings, ParamGroups
from trainlib.optim.clip import attach_clip
from trainlib.optim.groups import build_param_groups
from trainlib.registries import OPTIMIZERS


def build_optimizer(
    spec: BaseModel | dict[str, Any],
    params: nn.Module | Iterable[Any],
    *,
    adjust_groups: Callable[[ParamGroups], ParamGroups] | None = None,
) -> torch.optim.Optimizer:
    """Build a registered optimizer (`{"name": "adamw", "lr": 1e-3, ...}`).

    `params` is a module (best: its parameter names give the no-decay, lr-multiplier and
    layer-decay groups and the final layer), named parameters, tensors, or ready param groups.
    `adjust_groups` lets regularizers change the groups before the optimizer is built.
    """
    settings = OPTIMIZERS.settings_for(spec)
    builder = OPTIMIZERS.get(settings.name).builder
    if not isinstance(settings, OptimizerSettings):
        # a wrapper, e.g. sam: it builds its base optimizer itself
        optimizer: torch.optim.Optimizer = builder(settings, params, adjust_groups=adjust_groups)
        return optimizer
    groups = build_param_groups(params, settings.groups, settings.lr, settings.weight_decay)
    if adjust_groups is not None:
        groups = adjust_groups(groups)
    optimizer = builder(settings, groups)
    attach_clip(optimizer, settings.clip)
    return optimizer
