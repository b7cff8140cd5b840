"""`grams`: Grams: Gradient Descent with Adaptive Momentum Scaling (Cao, Li & Song, 2024).

Adam's step magnitude with the current gradient's sign. Official code (Gunale0926/Grams):

    θ ← θ − η λ θ                                   (decoupled decay, before the step; if λ > 0)
    m ← β1 m + (1 − β1) g ;  v ← β2 v + (1 − β2) g²
    s = η · sqrt(1 − β2^t) / (1 − β1^t)             (s = η without bias correction)
    θ ← θ − s · sign(g) ⊙ |m| / (sqrt(v) + ε)       (ε on the uncorrected root, as the authors)

A coordinate whose gradient is exactly 0 does not move, whatever its momentum. Unlike the
official code, `p.grad` is left as it was (the authors overwrite it with sign(g)·|m|).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import torch
from pydantic import Field

from trainlib.optim.base import OptimizerSettings, ParamGroups, RegimenOptimizer, use_foreach
from trainlib.registries import OPTIMIZERS

Beta = Annotated[float, Field(ge=0, lt=1)]


class GramsSettings(OptimizerSettings):
    """Grams: θ ← θ − η·sqrt(1−β2^t)/(1−β1^t) · sign(g) ⊙ |m| / (sqrt(v) + ε), decay before."""

    lr: float = Field(1e-3, gt=0, le=10)
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="(beta1, beta2), each in [0, 1)")
    eps: float = Field(1e-6, gt=0, le=1, description="added to the uncorrected sqrt(v)")
    correct_bias: bool = Field(True, description="Adam's bias correction of the step size")


class Grams(RegimenOptimizer):
    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        correct_bias: bool = True,
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "correct_bias": correct_bias,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._closure_loss(closure)
        for group, params in self._groups_with_grads():
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
            if use_foreach(group["foreach"], params):
                self._foreach(group, params)
            else:
                self._single(group, params)
        return loss

    def _step_size(self, group: dict[str, Any], step: float) -> float:
        beta1, beta2 = group["betas"]
        if not group["correct_bias"]:
            return float(group["lr"])
        return float(group["lr"] * math.sqrt(1 - beta2**step) / (1 - beta1**step))

    def _single(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        beta1, beta2 = group["betas"]
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        for p in params:
            assert p.grad is not None
            grad, state = p.grad, self.state[p]
            m, v = state["exp_avg"], state["exp_avg_sq"]
            if wd > 0:
                p.mul_(1 - lr * wd)
            m.mul_(beta1).add_(grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = v.sqrt().add_(eps)
            direction = m.abs().mul_(grad.sign())
            p.addcdiv_(direction, denom, value=-self._step_size(group, state["step"].item()))

    def _foreach(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        beta1, beta2 = group["betas"]
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        grads = [p.grad for p in params if p.grad is not None]
        ms = [self.state[p]["exp_avg"] for p in params]
        vs = [self.state[p]["exp_avg_sq"] for p in params]
        if wd > 0:
            torch._foreach_mul_(params, 1 - lr * wd)
        torch._foreach_mul_(ms, beta1)
        torch._foreach_add_(ms, grads, alpha=1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(vs)
        torch._foreach_add_(denom, eps)
        direction = torch._foreach_abs(ms)
        torch._foreach_mul_(direction, torch._foreach_sign(grads))
        sizes = [-self._step_size(group, self.state[p]["step"].item()) for p in params]
        torch._foreach_addcdiv_(params, direction, denom, sizes)


@OPTIMIZERS.register(
    "grams",
    settings=GramsSettings,
    summary="Adam's update magnitude with the sign of the current gradient",
    paper="Grams: Gradient Descent with Adaptive Momentum Scaling (Cao, Li & Song, 2024)",
)
def build_grams(s: GramsSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return Grams(groups, **s.optimizer_kwargs())
