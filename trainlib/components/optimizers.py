"""Optimizers. sgd, adam and adamw are torch's own (with the foreach multi-tensor path)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainlib.registries import OPTIMIZERS

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: float = Field(1e-3, gt=0, le=10, description="learning rate")
    weight_decay: float = Field(0.0, ge=0, le=1)


class SGDSettings(_Base):
    """Stochastic gradient descent with (Nesterov) momentum and coupled L2 weight decay."""

    lr: float = Field(0.1, gt=0, le=10)
    momentum: float = Field(0.0, ge=0, lt=1)
    dampening: float = Field(0.0, ge=0, le=1)
    nesterov: bool = False

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGDSettings:
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening = 0")
        return self


class AdamSettings(_Base):
    """Adam: bias-corrected first and second moment estimates."""

    betas: tuple[float, float] = Field((0.9, 0.999), description="(beta1, beta2), each in [0, 1)")
    eps: float = Field(1e-8, gt=0, le=1)
    amsgrad: bool = False

    @model_validator(mode="after")
    def _betas_in_range(self) -> AdamSettings:
        for i, beta in enumerate(self.betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"betas[{i}] must be in [0, 1), got {beta}")
        return self


class AdamWSettings(AdamSettings):
    """AdamW: Adam with weight decay decoupled from the gradient."""

    weight_decay: float = Field(1e-2, ge=0, le=1)


def _foreach() -> bool:
    # torch picks the fused/foreach path itself on CUDA; on CPU foreach is still the faster one.
    return True


@OPTIMIZERS.register(
    "sgd", settings=SGDSettings, summary="SGD with momentum, Nesterov and L2 weight decay"
)
def build_sgd(s: SGDSettings, params: Params) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params,
        lr=s.lr,
        momentum=s.momentum,
        dampening=s.dampening,
        nesterov=s.nesterov,
        weight_decay=s.weight_decay,
        foreach=_foreach(),
    )


@OPTIMIZERS.register(
    "adam",
    settings=AdamSettings,
    summary="Adam: adaptive moment estimation",
    paper="Adam: A Method for Stochastic Optimization (Kingma & Ba, 2015)",
)
def build_adam(s: AdamSettings, params: Params) -> torch.optim.Optimizer:
    return torch.optim.Adam(
        params,
        lr=s.lr,
        betas=s.betas,
        eps=s.eps,
        weight_decay=s.weight_decay,
        amsgrad=s.amsgrad,
        foreach=_foreach(),
    )


@OPTIMIZERS.register(
    "adamw",
    settings=AdamWSettings,
    summary="AdamW: Adam with decoupled weight decay",
    paper="Decoupled Weight Decay Regularization (Loshchilov & Hutter, 2019)",
)
def build_adamw(s: AdamWSettings, params: Params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        params,
        lr=s.lr,
        betas=s.betas,
        eps=s.eps,
        weight_decay=s.weight_decay,
        amsgrad=s.amsgrad,
        foreach=_foreach(),
    )


def build_optimizer(spec: BaseModel | dict[str, Any], params: Params) -> torch.optim.Optimizer:
    """Build a registered optimizer from its spec (`{"name": "adamw", "lr": 1e-3, ...}`)."""
    optimizer: torch.optim.Optimizer = OPTIMIZERS.build(spec, params)
    return optimizer
