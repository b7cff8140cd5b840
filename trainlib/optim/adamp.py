"""`adamp` and `sgdp`: Adam and SGD without the radial part of updates to scale-invariant weights.

AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant Weights (Heo et al.,
2021). Semantics of the authors' code, clovaai/AdamP v0.3.0:

Projection, only for tensors with ndim > 1. Two views, tried in order: channel (one row per output
unit, shape (out, −1)), then layer (the whole tensor as one row). A view triggers when
max_r |cos(g_r, θ_r)| < δ/sqrt(row length) (cosine of the *gradient* with the current θ, torch
cosine_similarity with ε); then the *update* u loses its radial part row by row,
u_r ← u_r − θ̂_r⟨θ̂_r, u_r⟩ with θ̂_r = θ_r/(‖θ_r‖ + ε), and the weight decay is scaled by wd_ratio.
If no view triggers, u and the decay are left alone.

The test and the projection run without a host synchronisation (torch.where), so each ≥2-D
tensor computes both views' projections; the result is the same as the authors' if/else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from trainlib.optim.base import BetasSettings, OptimizerSettings, ParamGroups, check_betas
from trainlib.optim.per_tensor import GroupStepOptimizer
from trainlib.registries import OPTIMIZERS


def project_update(
    p: torch.Tensor, grad: torch.Tensor, update: torch.Tensor, delta: float, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(update with the radial part removed where a view triggers, whether one triggered)."""
    out = update
    done = torch.zeros((), dtype=torch.bool, device=p.device)
    for rows in (p.shape[0], 1):  # channel view first, then layer view
        pv = p.reshape(rows, -1)
        cosine = F.cosine_similarity(grad.reshape(rows, -1), pv, dim=1, eps=eps).abs()
        triggers = (cosine.max() < delta / math.sqrt(pv.shape[1])) & ~done
        unit = pv / pv.norm(dim=1, keepdim=True).add(eps)
        uv = update.reshape(rows, -1)
        projected = (uv - unit * (unit * uv).sum(dim=1, keepdim=True)).reshape(update.shape)
        out = torch.where(triggers, projected, out)
        done = done | triggers
    return out, done


class _Projected(GroupStepOptimizer):
    """Shared by AdamP and SGDP: the projection and the per-tensor decay factor."""

    def _project_all(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        updates: list[torch.Tensor],
        decay: Callable[[float], float],
    ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """Projected updates and decay factors θ ← θ·factor (None when λ = 0).

        `decay(ratio)` is the factor for a tensor whose decay is scaled by `ratio`."""
        weight_decay = group["weight_decay"] > 0
        full = decay(1.0)
        scaled = decay(group["wd_ratio"])
        out: list[torch.Tensor] = []
        factors: list[torch.Tensor] = []
        for p, u in zip(params, updates, strict=True):
            assert p.grad is not None
            if p.ndim > 1:
                u, invariant = project_update(p, p.grad, u, group["delta"], group["eps"])
                if weight_decay:
                    factors.append(torch.where(invariant, p.new_tensor(scaled), p.new_tensor(full)))
            elif weight_decay:
                factors.append(p.new_tensor(full))
            out.append(u)
        return out, (factors if weight_decay else None)


class _ProjectionSettings(OptimizerSettings):
    eps: float = Field(1e-8, gt=0, le=1)
    delta: float = Field(0.1, gt=0, le=1, description="cosine threshold δ (divided by sqrt(n))")
    wd_ratio: float = Field(
        0.1, ge=0, le=1, description="weight-decay multiplier for scale-invariant tensors"
    )
    nesterov: bool = False


class AdamPSettings(_ProjectionSettings, BetasSettings):
    """AdamP: Adam whose update to scale-invariant weights is projected (clovaai semantics;
    AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant Weights).

    m ← β1m + (1−β1)g; v ← β2v + (1−β2)g²; D = sqrt(v)/sqrt(1−β2^t) + ε;
    u = (β1m + (1−β1)g)/D if nesterov else m/D; (u, r) = Π(θ, g, u);
    θ ← θ·(1 − ηλr); θ ← θ − η/(1−β1^t)·u.   r = wd_ratio where projected, 1 otherwise.
    """

    betas: tuple[float, float] = Field((0.9, 0.999), description="(beta1, beta2), each in [0, 1)")


class SGDPSettings(_ProjectionSettings):
    """SGDP: SGD whose update to scale-invariant weights is projected (clovaai semantics;
    AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant Weights).

    b ← μb + (1−τ)g (b starts at zero: dampening applies at the first step too);
    u = g + μb if nesterov else b; (u, r) = Π(θ, g, u); θ ← θ·(1 − ηλr/(1 − μ)); θ ← θ − ηu.
    The authors' class has no default lr; 0.1 is their README's example.
    """

    lr: float = Field(0.1, gt=0, le=10)
    momentum: float = Field(0.0, ge=0, lt=1)
    dampening: float = Field(0.0, ge=0, le=1)


class AdamP(_Projected):
    """AdamP; state: `step`, `exp_avg`, `exp_avg_sq`."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        delta: float = 0.1,
        wd_ratio: float = 0.1,
        nesterov: bool = False,
        foreach: bool | None = None,
    ) -> None:
        check_betas(betas)
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "delta": delta,
            "wd_ratio": wd_ratio,
            "nesterov": nesterov,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def _init_state(self, p: torch.Tensor, state: dict[str, Any]) -> None:
        state["step"] = torch.tensor(0.0)
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _decay(self, group: dict[str, Any]) -> Callable[[float], float]:
        return lambda ratio: 1 - group["lr"] * group["weight_decay"] * ratio

    def _single_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        beta1, beta2 = group["betas"]
        for p in params:
            assert p.grad is not None
            grad = p.grad
            state = self.state[p]
            state["step"] += 1
            t = float(state["step"])
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**t)).add_(group["eps"])
            if group["nesterov"]:
                update = (beta1 * exp_avg + (1 - beta1) * grad) / denom
            else:
                update = exp_avg / denom
            (update,), factors = self._project_all(group, [p], [update], self._decay(group))
            if factors is not None:
                p.mul_(factors[0])
            p.add_(update, alpha=-group["lr"] / (1 - beta1**t))

    def _foreach_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        beta1, beta2 = group["betas"]
        grads: list[torch.Tensor] = [p.grad for p in params if p.grad is not None]
        states = [self.state[p] for p in params]
        steps = [s["step"] for s in states]
        exp_avgs = [s["exp_avg"] for s in states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        torch._foreach_add_(steps, 1.0)
        ts = [float(s) for s in steps]
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, grads, alpha=1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, [math.sqrt(1 - beta2**t) for t in ts])
        torch._foreach_add_(denom, group["eps"])
        if group["nesterov"]:
            numer = torch._foreach_mul(exp_avgs, beta1)
            torch._foreach_add_(numer, torch._foreach_mul(grads, 1 - beta1))
            raw = torch._foreach_div(numer, denom)
        else:
            raw = torch._foreach_div(exp_avgs, denom)
        updates, factors = self._project_all(group, params, list(raw), self._decay(group))
        if factors is not None:
            torch._foreach_mul_(params, factors)
        torch._foreach_mul_(updates, [-group["lr"] / (1 - beta1**t) for t in ts])
        torch._foreach_add_(params, updates)


class SGDP(_Projected):
    """SGDP; state: `momentum_buffer` (starting at zero)."""

    def __init__(
        self,
        params: Any,
        lr: float = 0.1,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        eps: float = 1e-8,
        delta: float = 0.1,
        wd_ratio: float = 0.1,
        foreach: bool | None = None,
    ) -> None:
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1) (the decay divides by 1 − μ): {momentum}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "eps": eps,
            "delta": delta,
            "wd_ratio": wd_ratio,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def _init_state(self, p: torch.Tensor, state: dict[str, Any]) -> None:
        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _decay(self, group: dict[str, Any]) -> Callable[[float], float]:
        # the authors' 1/(1 − μ): the decay matches the size of a momentum-accumulated step
        return lambda ratio: (
            1 - group["lr"] * group["weight_decay"] * ratio / (1 - group["momentum"])
        )

    def _single_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        mu = group["momentum"]
        for p in params:
            assert p.grad is not None
            grad = p.grad
            buf = self.state[p]["momentum_buffer"]
            buf.mul_(mu).add_(grad, alpha=1 - group["dampening"])
            update = grad + mu * buf if group["nesterov"] else buf
            (update,), factors = self._project_all(group, [p], [update], self._decay(group))
            if factors is not None:
                p.mul_(factors[0])
            p.add_(update, alpha=-group["lr"])

    def _foreach_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        mu = group["momentum"]
        grads: list[torch.Tensor] = [p.grad for p in params if p.grad is not None]
        bufs = [self.state[p]["momentum_buffer"] for p in params]
        torch._foreach_mul_(bufs, mu)
        torch._foreach_add_(bufs, grads, alpha=1 - group["dampening"])
        if group["nesterov"]:
            updates = list(torch._foreach_add(grads, torch._foreach_mul(bufs, mu)))
        else:
            updates = bufs
        updates, factors = self._project_all(group, params, updates, self._decay(group))
        if factors is not None:
            torch._foreach_mul_(params, factors)
        torch._foreach_add_(params, updates, alpha=-group["lr"])


@OPTIMIZERS.register(
    "adamp",
    settings=AdamPSettings,
    summary="AdamP: Adam without the radial update (and with less decay) on scale-invariant "
    "weights",
    paper="AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant Weights "
    "(Heo et al., 2021)",
)
def build_adamp(s: AdamPSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return AdamP(groups, **s.optimizer_kwargs())


@OPTIMIZERS.register(
    "sgdp",
    settings=SGDPSettings,
    summary="SGDP: SGD without the radial update (and with less decay) on scale-invariant weights",
    paper="AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant Weights "
    "(Heo et al., 2021)",
)
def build_sgdp(s: SGDPSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return SGDP(groups, **s.optimizer_kwargs())
