"""What every optimizer shares: settings (lr, decay, clipping, parameter groups) and helpers.

Every optimizer's settings model subclasses `OptimizerSettings`, so `clip`, `groups` and `foreach`
mean the same thing for all of them. Optimizers read their hyper-parameters from each param group,
as torch's do, so per-group learning rates and weight decay work everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ParamGroups = list[dict[str, Any]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClipSettings(_Strict):
    """Gradient transforms applied before the optimizer's update (any optimizer)."""

    norm: float | None = Field(None, gt=0, description="clip the global L2 norm of all gradients")
    value: float | None = Field(None, gt=0, description="clamp every gradient entry to ±value")
    agc: float | None = Field(
        None,
        gt=0,
        description="adaptive gradient clipping factor λ (High-Performance Large-Scale Image "
        "Recognition Without Normalization); not applied to the final layer",
    )
    agc_eps: float = Field(1e-3, gt=0, description="floor on AGC's parameter norms")


class GroupSettings(_Strict):
    """How parameters are split into groups."""

    no_decay: list[str] = Field(
        default_factory=lambda: ["bias", "norm"],
        description="parameters without weight decay: 'bias' (biases and other 1-D tensors), "
        "'norm' (normalization layers' parameters) and/or fnmatch patterns on parameter names",
    )
    lr_multipliers: dict[str, float] = Field(
        default_factory=dict,
        description="fnmatch pattern on the parameter name -> learning-rate multiplier",
    )
    layer_decay: float | None = Field(
        None, gt=0, le=1, description="layer-wise lr decay: layer i of L gets lr * decay^(L-1-i)"
    )

    @model_validator(mode="after")
    def _positive_multipliers(self) -> GroupSettings:
        for pattern, mult in self.lr_multipliers.items():
            if mult < 0:
                raise ValueError(f"lr_multipliers[{pattern!r}] must be >= 0, got {mult}")
        return self


class OptimizerSettings(_Strict):
    lr: float = Field(1e-3, gt=0, le=10, description="learning rate")
    weight_decay: float = Field(0.0, ge=0, le=10)
    clip: ClipSettings | None = None
    groups: GroupSettings = Field(default_factory=GroupSettings)
    foreach: bool | None = Field(
        None, description="multi-tensor (foreach) kernels; None = the faster path for the device"
    )

    def optimizer_kwargs(self, drop: Collection[str] = ()) -> dict[str, Any]:
        """The settings as the optimizer's keyword arguments: every field but the registry's tag
        (name), the loop's own (clip, groups) and `drop`, so builders cannot miss a new field."""
        skip = {"name", "clip", "groups", *drop}
        return {name: getattr(self, name) for name in type(self).model_fields if name not in skip}


def check_betas(betas: tuple[float, ...]) -> None:
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"betas[{i}] must be in [0, 1), got {beta}")


class BetasSettings(OptimizerSettings):
    """Settings whose subclass declares `betas`: every entry must lie in [0, 1)."""

    # check_fields=False: the field (its default, description) belongs to each subclass
    @field_validator("betas", check_fields=False)
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, ...]) -> tuple[float, ...]:
        check_betas(betas)  # a field validator, so errors name "betas"
        return betas


def closure_loss(closure: Callable[[], Any] | None) -> Any:
    """The closure's loss, evaluated with gradients on (step() itself runs under no_grad)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class RegimenOptimizer(torch.optim.Optimizer):
    """Base of our own optimizers. Flags tell the loop what a step needs."""

    #: step() wants the current loss: the loop calls `optimizer.step(loss=loss)`
    needs_loss: ClassVar[bool] = False

    def _params_with_grad(self, group: dict[str, Any]) -> list[torch.Tensor]:
        return [p for p in group["params"] if p.grad is not None]

    _closure_loss = staticmethod(closure_loss)

    def _groups_with_grads(self) -> list[tuple[dict[str, Any], list[torch.Tensor]]]:
        """(group, its tensors with a gradient) for each group that has any."""
        return [(g, ps) for g in self.param_groups if (ps := self._params_with_grad(g))]


def use_foreach(foreach: bool | None, params: Iterable[torch.Tensor]) -> bool:
    """foreach unless told otherwise; torch's foreach kernels need same-device dense tensors."""
    if foreach is not None:
        return foreach
    return all(not p.is_sparse for p in params)


def innermost(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The optimizer that really steps: a wrapper's base (schedulers attach to it)."""
    while isinstance(getattr(optimizer, "base", None), torch.optim.Optimizer):
        optimizer = optimizer.base  # type: ignore[attr-defined]
    return optimizer
