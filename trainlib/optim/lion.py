"""`lion`: the sign-momentum optimizer found by program search.

Symbolic Discovery of Optimization Algorithms (Chen et al., 2023); semantics of the authors'
google/automl lion/lion_pytorch.py:

    θ ← θ·(1 − ηλ)                     (decoupled decay of θ_{t−1})
    c = β1 m + (1 − β1) g              (interpolation used only for the update)
    θ ← θ − η sign(c)                  (sign(0) = 0)
    m ← β2 m + (1 − β2) g              (the stored momentum uses β2, updated after the step)

Every moving coordinate moves by exactly η (besides the decay). With decay λ the iterates stay in
(and are drawn into) the box ‖θ‖∞ ≤ 1/λ ("Lion Secretly Solves Constrained Optimization", Chen
et al.).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from trainlib.optim.base import BetasSettings, ParamGroups, check_betas
from trainlib.optim.per_tensor import GroupStepOptimizer
from trainlib.registries import OPTIMIZERS


class LionSettings(BetasSettings):
    """Lion: θ ← θ(1 − ηλ) − η sign(β1 m + (1 − β1) g); m ← β2 m + (1 − β2) g.

    Paper: Symbolic Discovery of Optimization Algorithms (Chen et al., 2023). The authors advise
    an lr 3–10× smaller and a λ 3–10× larger than AdamW's.
    """

    lr: float = Field(1e-4, gt=0, le=10)
    betas: tuple[float, float] = Field((0.9, 0.99), description="(beta1, beta2), each in [0, 1)")


class Lion(GroupStepOptimizer):
    """Lion; state: `exp_avg` (the momentum m)."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        foreach: bool | None = None,
    ) -> None:
        check_betas(betas)
        defaults = {"lr": lr, "betas": betas, "weight_decay": weight_decay, "foreach": foreach}
        super().__init__(params, defaults)

    def _init_state(self, p: torch.Tensor, state: dict[str, Any]) -> None:
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _single_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        beta1, beta2 = group["betas"]
        lr, weight_decay = group["lr"], group["weight_decay"]
        for p in params:
            assert p.grad is not None
            grad = p.grad
            exp_avg = self.state[p]["exp_avg"]
            if weight_decay != 0:
                p.mul_(1 - lr * weight_decay)
            update = exp_avg * beta1 + grad * (1 - beta1)
            p.add_(update.sign_(), alpha=-lr)
            exp_avg.mul_(beta2).add_(grad, alpha=1 - beta2)

    def _foreach_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        beta1, beta2 = group["betas"]
        lr, weight_decay = group["lr"], group["weight_decay"]
        grads: list[torch.Tensor] = [p.grad for p in params if p.grad is not None]
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        if weight_decay != 0:
            torch._foreach_mul_(params, 1 - lr * weight_decay)
        updates = torch._foreach_mul(exp_avgs, beta1)
        torch._foreach_add_(updates, torch._foreach_mul(grads, 1 - beta1))
        torch._foreach_sign_(updates)
        torch._foreach_add_(params, updates, alpha=-lr)
        torch._foreach_mul_(exp_avgs, beta2)
        torch._foreach_add_(exp_avgs, grads, alpha=1 - beta2)


@OPTIMIZERS.register(
    "lion",
    settings=LionSettings,
    summary="Lion: sign of an interpolated momentum, with decoupled weight decay",
    paper="Symbolic Discovery of Optimization Algorithms (Chen et al., 2023)",
)
def build_lion(s: LionSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return Lion(groups, **s.optimizer_kwargs())
