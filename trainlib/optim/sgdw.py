"""`sgdw`: SGD with momentum and weight decay decoupled from the gradient.

Decoupled Weight Decay Regularization (Loshchilov & Hutter, 2019). The default is the widely used
form of timm's and pytorch-optimizer's SGDW (decay scaled by the lr, applied to θ_{t−1}):

    b ← g at t = 1, else b ← μ b + (1 − τ) g        (τ = dampening)
    d = g + μ b  if nesterov  else  b
    θ ← θ·(1 − η_t λ) − η_t d

decay="independent" is the authors' Torch7 code (and Composer's DecoupledSGDW): the decay is scaled
by the schedule multiplier only, θ ← θ·(1 − (η_t/η_max) λ) − η_t d, with η_max the group's lr before
any scheduler. The paper's Algorithm 1 also puts the lr inside the buffer; that form equals this one
for a constant schedule and is not offered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from trainlib.optim.base import ParamGroups, RegimenOptimizer, use_foreach
from trainlib.optim.decay import (
    IndependentDecaySettings,
    independent_decay_factor,
    remember_base_lr,
)
from trainlib.registries import OPTIMIZERS

#: with decay="independent" and no weight_decay given: the decay per step the default
#: (λ 5e-4, lr 0.1, coupled) applies, λ_ind = λ_lr · η_max
INDEPENDENT_DEFAULT_DECAY = 5e-5


class SGDWSettings(IndependentDecaySettings):
    """SGDW: SGD with (Nesterov) momentum and decoupled weight decay (Decoupled Weight Decay
    Regularization, Loshchilov & Hutter, 2019).

    b ← μb + (1 − τ)g (b = g at the first step); d = g + μb if nesterov else b;
    θ ← θ·(1 − η_t λ) − η_t d  (decay="coupled_lr"),  θ ← θ·(1 − (η_t/η_max) λ) − η_t d
    (decay="independent", the authors' code). Defaults lr 0.1, momentum 0.9 as the authors' code.
    """

    lr: float = Field(0.1, gt=0, le=10)
    weight_decay: float = Field(
        5e-4,
        ge=0,
        le=10,
        description="λ; default 5e-4, or 5e-5 with decay='independent' (the same decay at lr 0.1)",
    )
    momentum: float = Field(0.9, ge=0, lt=1)
    dampening: float = Field(0.0, ge=0, le=1, description="τ; not applied at the first step")
    nesterov: bool = False
    decay: Literal["coupled_lr", "independent"] = Field(
        "coupled_lr",
        description="coupled_lr: θ·(1 − η_t λ) (timm, pytorch-optimizer); independent: "
        "θ·(1 − (η_t/η_max) λ) (the authors' code, Composer)",
    )
    independent_default_decay = INDEPENDENT_DEFAULT_DECAY

    @model_validator(mode="after")
    def _consistent(self) -> SGDWSettings:
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening = 0")
        self.check_independent_decay()
        return self


class SGDW(RegimenOptimizer):
    """SGD with decoupled weight decay; state: `momentum_buffer` (only when momentum > 0)."""

    def __init__(
        self,
        params: Any,
        lr: float = 0.1,
        momentum: float = 0.9,
        dampening: float = 0.0,
        weight_decay: float = 5e-4,
        nesterov: bool = False,
        decay: str = "coupled_lr",
        foreach: bool | None = None,
    ) -> None:
        if decay not in ("coupled_lr", "independent"):
            raise ValueError(f"decay must be 'coupled_lr' or 'independent', got {decay!r}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "decay": decay,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        remember_base_lr(self.param_groups[-1])

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._closure_loss(closure)
        for group, params in self._groups_with_grads():
            if group["weight_decay"] == 0:
                factor = 1.0
            elif group["decay"] == "independent":
                factor = independent_decay_factor(group)
            else:
                factor = 1.0 - group["lr"] * group["weight_decay"]
            if use_foreach(group["foreach"], params):
                self._foreach_step(group, params, factor)
            else:
                self._single_step(group, params, factor)
        return loss

    def _buffer(self, p: torch.Tensor, grad: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        """The updated momentum buffer; the first step stores g itself (no dampening)."""
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = grad.detach().clone()
        else:
            buf: torch.Tensor = state["momentum_buffer"]
            buf.mul_(group["momentum"]).add_(grad, alpha=1 - group["dampening"])
        result: torch.Tensor = state["momentum_buffer"]
        return result

    def _single_step(
        self, group: dict[str, Any], params: list[torch.Tensor], factor: float
    ) -> None:
        mu = group["momentum"]
        for p in params:
            assert p.grad is not None
            grad = p.grad
            if factor != 1.0:
                p.mul_(factor)  # decay θ_{t−1}; the update below does not depend on θ
            d = grad
            if mu != 0:
                buf = self._buffer(p, grad, group)
                d = grad.add(buf, alpha=mu) if group["nesterov"] else buf
            p.add_(d, alpha=-group["lr"])

    def _foreach_step(
        self, group: dict[str, Any], params: list[torch.Tensor], factor: float
    ) -> None:
        mu = group["momentum"]
        grads: list[torch.Tensor] = [p.grad for p in params if p.grad is not None]
        if factor != 1.0:
            torch._foreach_mul_(params, factor)  # decay θ_{t−1}
        updates: list[torch.Tensor] | tuple[torch.Tensor, ...] = grads
        if mu != 0:
            old_bufs, old_grads = [], []
            for p, g in zip(params, grads, strict=True):
                state = self.state[p]
                if "momentum_buffer" in state:
                    old_bufs.append(state["momentum_buffer"])
                    old_grads.append(g)
                else:
                    state["momentum_buffer"] = g.detach().clone()  # first step: b = g
            if old_bufs:
                torch._foreach_mul_(old_bufs, mu)
                torch._foreach_add_(old_bufs, old_grads, alpha=1 - group["dampening"])
            bufs = [self.state[p]["momentum_buffer"] for p in params]
            updates = torch._foreach_add(grads, bufs, alpha=mu) if group["nesterov"] else bufs
        torch._foreach_add_(params, updates, alpha=-group["lr"])


@OPTIMIZERS.register(
    "sgdw",
    settings=SGDWSettings,
    summary="SGD with momentum and decoupled weight decay (lr-coupled or schedule-only)",
    paper="Decoupled Weight Decay Regularization (Loshchilov & Hutter, 2019)",
)
def build_sgdw(s: SGDWSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return SGDW(groups, **s.optimizer_kwargs())
