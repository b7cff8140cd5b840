"""`novograd`: Stochastic Gradient Methods with Layer-wise Adaptive Moments for Training of Deep
Networks (Ginsburg et al., 2019).

Semantics of NVIDIA NeMo's `Novograd` (nemo/core/optim/novograd.py, the authors' group), which the
paper's Algorithm 1 agrees with: one second moment per tensor ("layer"), initialised with the first
‖g‖², decay added after the normalisation, no bias correction.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from pydantic import Field

from trainlib.optim.base import OptimizerSettings, ParamGroups
from trainlib.optim.per_tensor import PerTensorOptimizer
from trainlib.registries import OPTIMIZERS

_Beta = Annotated[float, Field(ge=0, lt=1)]


class NovoGradSettings(OptimizerSettings):
    """NovoGrad: SGD-M on gradients normalised by a per-tensor (layer-wise) second moment.

    Per tensor, v a scalar:
        v ← ‖g‖² if v = 0 (the first step) else β2 v + (1 − β2) ‖g‖²
        u = g / (sqrt(v) + ε) + λ θ;  u ← (1 − β1) u if grad_averaging
        m ← β1 m + u;  θ ← θ − η m
    amsgrad normalises by the running maximum of v; luc (NeMo's layer-wise update clipping) uses
    the step size min(η, luc_trust·‖θ‖/(‖m‖ + luc_eps)).
    """

    lr: float = Field(1e-3, gt=0, le=10)
    betas: tuple[_Beta, _Beta] = Field((0.95, 0.98), description="(β1, β2), each in [0, 1)")
    eps: float = Field(1e-8, gt=0, le=1)
    grad_averaging: bool = Field(False, description="scale the normalised gradient by (1 − β1)")
    amsgrad: bool = Field(False, description="normalise by the running maximum of v")
    luc: bool = Field(False, description="layer-wise update clipping (NeMo)")
    luc_trust: float = Field(1e-3, gt=0, le=1e3, description="trust coefficient of luc")
    luc_eps: float = Field(1e-8, gt=0, le=1)


class NovoGrad(PerTensorOptimizer):
    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.95, 0.98),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        grad_averaging: bool = False,
        amsgrad: bool = False,
        luc: bool = False,
        luc_trust: float = 1e-3,
        luc_eps: float = 1e-8,
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "grad_averaging": grad_averaging,
            "amsgrad": amsgrad,
            "luc": luc,
            "luc_trust": luc_trust,
            "luc_eps": luc_eps,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def _state(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = p.new_zeros(())
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = p.new_zeros(())
        return state

    @staticmethod
    def _step_single(group: dict[str, Any], p: torch.Tensor, state: dict[str, Any]) -> None:
        assert p.grad is not None
        beta1, beta2 = group["betas"]
        state["step"] += 1
        v, m = state["exp_avg_sq"], state["exp_avg"]
        norm = torch.linalg.vector_norm(p.grad).square()
        # v = 0 means nothing seen yet (or only zero gradients): start from ‖g‖², as NeMo
        v.copy_(torch.where(v == 0, norm, v * beta2 + norm * (1 - beta2)))
        if group["amsgrad"]:
            torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        u = p.grad / (v.sqrt() + group["eps"])
        if group["weight_decay"] != 0:
            u.add_(p, alpha=group["weight_decay"])
        if group["grad_averaging"]:
            u.mul_(1 - beta1)
        m.mul_(beta1).add_(u)
        if group["luc"]:
            ratio = group["luc_trust"] * torch.linalg.vector_norm(p)
            rate = (ratio / (torch.linalg.vector_norm(m) + group["luc_eps"])).clamp(max=group["lr"])
            p.sub_(m * rate)
        else:
            p.sub_(m, alpha=group["lr"])

    @staticmethod
    def _step_foreach(
        group: dict[str, Any], params: list[torch.Tensor], states: list[dict[str, Any]]
    ) -> None:
        beta1, beta2 = group["betas"]
        grads = [p.grad for p in params if p.grad is not None]
        torch._foreach_add_([s["step"] for s in states], 1.0)
        vs = [s["exp_avg_sq"] for s in states]
        ms = [s["exp_avg"] for s in states]
        norms = torch._foreach_norm(grads)
        torch._foreach_mul_(norms, norms)
        ema = torch._foreach_mul(vs, beta2)
        torch._foreach_add_(ema, norms, alpha=1 - beta2)
        for v, n, e in zip(vs, norms, ema, strict=True):
            v.copy_(torch.where(v == 0, n, e))
        if group["amsgrad"]:
            maxes = [s["max_exp_avg_sq"] for s in states]
            torch._foreach_maximum_(maxes, vs)
            vs = maxes
        denoms = torch._foreach_sqrt(vs)
        torch._foreach_add_(denoms, group["eps"])
        us = torch._foreach_div(grads, denoms)
        if group["weight_decay"] != 0:
            torch._foreach_add_(us, params, alpha=group["weight_decay"])
        if group["grad_averaging"]:
            torch._foreach_mul_(us, 1 - beta1)
        torch._foreach_mul_(ms, beta1)
        torch._foreach_add_(ms, us)
        if group["luc"]:
            rates = torch._foreach_norm(params)
            torch._foreach_mul_(rates, group["luc_trust"])
            m_norms = torch._foreach_norm(ms)
            torch._foreach_add_(m_norms, group["luc_eps"])
            torch._foreach_div_(rates, m_norms)
            torch._foreach_clamp_max_(rates, group["lr"])
            torch._foreach_sub_(params, torch._foreach_mul(ms, rates))
        else:
            torch._foreach_sub_(params, ms, alpha=group["lr"])


@OPTIMIZERS.register(
    "novograd",
    settings=NovoGradSettings,
    summary="NovoGrad: momentum on gradients normalised by a layer-wise (per-tensor) 2nd moment",
    paper="Stochastic Gradient Methods with Layer-wise Adaptive Moments for Training of Deep "
    "Networks (Ginsburg et al., 2019)",
)
def build_novograd(s: NovoGradSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return NovoGrad(groups, **s.optimizer_kwargs())
