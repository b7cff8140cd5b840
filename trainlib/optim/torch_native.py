"""Optimizers torch already has, used as torch defines them (with the foreach path)."""

from __future__ import annotations

import torch
from pydantic import Field, model_validator

from trainlib.optim.base import OptimizerSettings, ParamGroups, check_betas
from trainlib.registries import OPTIMIZERS


class SGDSettings(OptimizerSettings):
    """SGD with (Nesterov) momentum and coupled L2 weight decay, as torch.optim.SGD."""

    lr: float = Field(0.1, gt=0, le=10)
    momentum: float = Field(0.0, ge=0, lt=1)
    dampening: float = Field(0.0, ge=0, le=1)
    nesterov: bool = False

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGDSettings:
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening = 0")
        return self


class AdamSettings(OptimizerSettings):
    """Adam: bias-corrected first and second moments; weight decay is coupled L2."""

    betas: tuple[float, float] = Field((0.9, 0.999), description="(beta1, beta2), each in [0, 1)")
    eps: float = Field(1e-8, gt=0, le=1)
    amsgrad: bool = False

    @model_validator(mode="after")
    def _betas_in_range(self) -> AdamSettings:
        check_betas(self.betas)
        return self


class AdamWSettings(AdamSettings):
    """AdamW: Adam with weight decay decoupled from the gradient."""

    weight_decay: float = Field(1e-2, ge=0, le=10)


@OPTIMIZERS.register(
    "sgd",
    settings=SGDSettings,
    summary="SGD with momentum, Nesterov and coupled L2 weight decay (torch.optim.SGD)",
)
def build_sgd(s: SGDSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        groups,
        lr=s.lr,
        momentum=s.momentum,
        dampening=s.dampening,
        nesterov=s.nesterov,
        weight_decay=s.weight_decay,
        foreach=s.foreach,
    )


@OPTIMIZERS.register(
    "adam",
    settings=AdamSettings,
    summary="Adam: adaptive moment estimation (torch.optim.Adam)",
    paper="Adam: A Method for Stochastic Optimization (Kingma & Ba, 2015)",
)
def build_adam(s: AdamSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return torch.optim.Adam(
        groups,
        lr=s.lr,
        betas=s.betas,
        eps=s.eps,
        weight_decay=s.weight_decay,
        amsgrad=s.amsgrad,
        foreach=s.foreach,
    )


@OPTIMIZERS.register(
    "adamw",
    settings=AdamWSettings,
    summary="AdamW: Adam with decoupled weight decay (torch.optim.AdamW)",
    paper="Decoupled Weight Decay Regularization (Loshchilov & Hutter, 2019)",
)
def build_adamw(s: AdamWSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        groups,
        lr=s.lr,
        betas=s.betas,
        eps=s.eps,
        weight_decay=s.weight_decay,
        amsgrad=s.amsgrad,
        foreach=s.foreach,
    )
