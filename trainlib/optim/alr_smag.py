"""`alr_smag`: Generalized Polyak Step Size for First Order Optimization with Momentum (2023).

ALR-SMAG: a Polyak step size computed from the batch loss, applied along a heavy-ball direction.
One step size for all parameters (the norm runs over every tensor that has a gradient):

    d ← β d + g                                   (d_0 = 0; a sum, not an average: no 1 − β)
    τ = min(η, (f − f*) / (c ‖d‖²))               (η = lr is the step-size cap)
    θ ← θ (1 − λ τ)                               (if λ > 0)
    θ ← θ − τ d

Unverified: this is the form of the implementation the MoMo authors used as a baseline
(fabian-sp/step-back, `AlrSmag`); no first-party code was found, and whether the paper's
stochastic method uses exactly this d (no 1 − β factor) and c = 1 by default is not confirmed.
Choices made here where that code is silent: with several parameter groups each group caps τ by
its own lr (the ratio is shared); ‖d‖ = 0 gives τ = lr (d = 0, so only decay acts) instead of a
division by zero; f < f* gives a negative τ (a step uphill) as in that code, unless
`clamp_negative` is set (MoMo clips at 0). The step size stays on the device (no host sync).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from pydantic import Field

from trainlib.optim.base import OptimizerSettings, ParamGroups, RegimenOptimizer, use_foreach
from trainlib.registries import OPTIMIZERS


class AlrSmagSettings(OptimizerSettings):
    """ALR-SMAG: d ← βd + g; τ = min(lr, (f − f*)/(c‖d‖²)); θ ← θ(1 − λτ) − τd."""

    lr: float = Field(0.1, gt=0, le=10, description="upper bound on the Polyak step size τ")
    beta: float = Field(0.9, ge=0, lt=1, description="momentum of d (d ← βd + g)")
    lb: float = Field(0.0, ge=-1e6, le=1e6, description="lower bound f* on the loss")
    c: float = Field(1.0, gt=0, le=1e6, description="c in τ = (f − f*)/(c‖d‖²)")
    clamp_negative: bool = Field(
        False, description="clip f − f* at 0 (no uphill steps when the loss is below f*)"
    )


class AlrSmag(RegimenOptimizer):
    needs_loss = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.1,
        beta: float = 0.9,
        lb: float = 0.0,
        c: float = 1.0,
        weight_decay: float = 0.0,
        clamp_negative: bool = False,
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "beta": beta,
            "lb": lb,
            "c": c,
            "weight_decay": weight_decay,
            "clamp_negative": clamp_negative,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(
        self,
        closure: Callable[[], Any] | None = None,
        loss: torch.Tensor | float | None = None,
    ) -> Any:
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if loss is None:
            raise ValueError("alr_smag needs the loss: call step(loss=...) or step(closure)")

        active = [(g, self._params_with_grad(g)) for g in self.param_groups]
        active = [(g, ps) for g, ps in active if ps]
        if not active:
            return loss
        # Momentum first: τ needs ‖d‖² over every tensor.
        squares: list[torch.Tensor] = []
        for group, params in active:
            for p in params:
                if "d" not in self.state[p]:
                    self.state[p]["d"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            ds = [self.state[p]["d"] for p in params]
            grads = [p.grad for p in params if p.grad is not None]
            if use_foreach(group["foreach"], params):
                torch._foreach_mul_(ds, group["beta"])
                torch._foreach_add_(ds, grads)
                norms = list(torch._foreach_norm(ds))
            else:
                norms = []
                for d, g in zip(ds, grads, strict=True):
                    d.mul_(group["beta"]).add_(g)
                    norms.append(torch.linalg.vector_norm(d))
            squares += [n.to(torch.float64).square() for n in norms]
        norm_sq = torch.stack(squares).sum()

        for group, params in active:
            f = torch.as_tensor(loss, dtype=torch.float64, device=norm_sq.device).detach()
            gap = f - group["lb"]
            if group["clamp_negative"]:
                gap = gap.clamp(min=0.0)
            denom = group["c"] * norm_sq
            safe = torch.where(denom > 0, denom, torch.ones_like(denom))
            ratio = torch.where(denom > 0, gap / safe, torch.full_like(gap, float("inf")))
            tau = torch.clamp(ratio, max=group["lr"])
            ds = [self.state[p]["d"] for p in params]
            wd = group["weight_decay"]
            if use_foreach(group["foreach"], params):
                t = tau.to(params[0].device)
                if wd > 0:
                    torch._foreach_mul_(params, 1 - wd * t)
                torch._foreach_sub_(params, torch._foreach_mul(ds, t))
            else:
                for p, d in zip(params, ds, strict=True):
                    t = tau.to(p.device)
                    if wd > 0:
                        p.mul_(1 - wd * t)
                    p.sub_(d * t)
        return loss


@OPTIMIZERS.register(
    "alr_smag",
    settings=AlrSmagSettings,
    summary="Polyak step size from the batch loss along a heavy-ball direction (needs the loss)",
    paper="Generalized Polyak Step Size for First Order Optimization with Momentum "
    "(Wang, Johansson, Zhang, 2023)",
)
def build_alr_smag(s: AlrSmagSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return AlrSmag(groups, **s.optimizer_kwargs())
