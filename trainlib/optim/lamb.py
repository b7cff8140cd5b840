"""`lamb` and `lars`: layer-wise trust ratios for large-batch training.

LAMB (Large Batch Optimization for Deep Learning: Training BERT in 76 minutes, You et al., 2020):
the paper's v5 algorithm, which timm's `Lamb` reproduces exactly with max_grad_norm=None and
always_adapt (global gradient clipping is our generic `clip.norm`).
LARS (Large Batch Training of Convolutional Networks, You et al., 2017): the paper's Algorithm 1,
with the global learning rate inside the momentum buffer.

Trust ratios are taken per tensor, for every tensor (biases and norm gains included, as both
algorithms state them); `exclude_1d` exempts tensors with ndim ≤ 1 (a common later practice, e.g.
SimCLR's LARS). A ratio whose norms are zero is 1 (timm): a zero-initialised tensor still moves.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from pydantic import Field, model_validator

from trainlib.optim.base import OptimizerSettings, ParamGroups
from trainlib.optim.per_tensor import PerTensorOptimizer
from trainlib.registries import OPTIMIZERS

_Beta = Annotated[float, Field(ge=0, lt=1)]
_Bound = Annotated[float, Field(ge=0, le=1e6)]


class LambSettings(OptimizerSettings):
    """LAMB: Adam's direction plus decay, rescaled per tensor by a trust ratio.

    m ← β1 m + (1 − β1) g;  v ← β2 v + (1 − β2) g²
    r = (m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + ε)   (no bias correction if switched off)
    u = r + λ θ   (decay inside the trust ratio)
    trust = φ(‖θ‖) / ‖u‖, φ(z) = z or clamp(z, γ_l, γ_u); trust = 1 if φ(‖θ‖) or ‖u‖ is 0
    θ ← θ − η · trust · u
    """

    lr: float = Field(1e-3, gt=0, le=10)
    weight_decay: float = Field(0.01, ge=0, le=10, description="λ (the paper's 0.01)")
    betas: tuple[_Beta, _Beta] = Field((0.9, 0.999), description="(β1, β2), each in [0, 1)")
    eps: float = Field(1e-6, gt=0, le=1)
    bias_correction: bool = Field(True, description="Adam's bias corrections of m and v")
    norm_bounds: tuple[_Bound, _Bound] | None = Field(
        None, description="(γ_l, γ_u): φ(‖θ‖) = clamp(‖θ‖, γ_l, γ_u); none = φ(z) = z"
    )
    exclude_1d: bool = Field(False, description="tensors with ndim ≤ 1 take trust = 1")

    @model_validator(mode="after")
    def _ordered_bounds(self) -> LambSettings:
        if self.norm_bounds is not None and self.norm_bounds[0] > self.norm_bounds[1]:
            raise ValueError("norm_bounds must be (lower, upper) with lower <= upper")
        return self


class LarsSettings(OptimizerSettings):
    """LARS: SGD with momentum whose per-tensor (layer) learning rate is a trust ratio.

        local = η_T ‖θ‖ / (‖g‖ + β ‖θ‖ + ε)   (1 if ‖θ‖ or ‖g‖ is 0)
        v ← μ v + γ_t · local · (g + β θ);  θ ← θ − v
    with γ_t = lr (schedules apply to it), β = weight_decay, η_T = trust_coefficient, μ = momentum.
    trust_clip (LARC's clip mode, as apex and timm): the layer's rate is min(local, γ_t) in place
    of γ_t·local.
    """

    lr: float = Field(1.0, gt=0, le=100, description="global learning rate γ (timm's default)")
    weight_decay: float = Field(5e-4, ge=0, le=10, description="β (the paper's 5e-4)")
    momentum: float = Field(0.9, ge=0, lt=1)
    trust_coefficient: float = Field(1e-3, gt=0, le=10, description="η_T")
    eps: float = Field(0.0, ge=0, le=1, description="added to the denominator (timm: 1e-8)")
    trust_clip: bool = Field(False, description="LARC: rate min(local, lr) instead of lr·local")
    exclude_1d: bool = Field(False, description="tensors with ndim ≤ 1 take local = 1")


def _where_positive(ratio: torch.Tensor, *norms: torch.Tensor) -> torch.Tensor:
    ok = norms[0] > 0
    for n in norms[1:]:
        ok = ok & (n > 0)
    return torch.where(ok, ratio, torch.ones_like(ratio))


class Lamb(PerTensorOptimizer):
    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        bias_correction: bool = True,
        norm_bounds: tuple[float, float] | None = None,
        exclude_1d: bool = False,
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "bias_correction": bias_correction,
            "norm_bounds": norm_bounds,
            "exclude_1d": exclude_1d,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def _state(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @staticmethod
    def _corrections(group: dict[str, Any], t: float) -> tuple[float, float]:
        if not group["bias_correction"]:
            return 1.0, 1.0
        beta1, beta2 = group["betas"]
        return 1.0 - beta1**t, 1.0 - beta2**t

    @staticmethod
    def _trust(
        group: dict[str, Any], p: torch.Tensor, w: torch.Tensor, u: torch.Tensor
    ) -> torch.Tensor:
        if group["exclude_1d"] and p.ndim <= 1:
            return torch.ones_like(w)
        if group["norm_bounds"] is not None:
            w = w.clamp(*group["norm_bounds"])
        return _where_positive(w / u, w, u)

    def _step_single(self, group: dict[str, Any], p: torch.Tensor, state: dict[str, Any]) -> None:
        assert p.grad is not None
        beta1, beta2 = group["betas"]
        state["step"] += 1
        bc1, bc2 = self._corrections(group, float(state["step"].item()))
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        u = (m / bc1) / ((v / bc2).sqrt_().add_(group["eps"]))
        if group["weight_decay"] != 0:
            u.add_(p, alpha=group["weight_decay"])
        trust = self._trust(group, p, torch.linalg.vector_norm(p), torch.linalg.vector_norm(u))
        p.sub_(u * trust, alpha=group["lr"])

    def _step_foreach(
        self, group: dict[str, Any], params: list[torch.Tensor], states: list[dict[str, Any]]
    ) -> None:
        beta1, beta2 = group["betas"]
        grads = [p.grad for p in params if p.grad is not None]
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1.0)
        bcs = [self._corrections(group, float(t.item())) for t in steps]  # CPU counters
        ms = [s["exp_avg"] for s in states]
        vs = [s["exp_avg_sq"] for s in states]
        torch._foreach_mul_(ms, beta1)
        torch._foreach_add_(ms, grads, alpha=1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
        denoms = torch._foreach_div(vs, [b[1] for b in bcs])
        torch._foreach_sqrt_(denoms)
        torch._foreach_add_(denoms, group["eps"])
        us = torch._foreach_div(ms, [b[0] for b in bcs])
        torch._foreach_div_(us, denoms)
        if group["weight_decay"] != 0:
            torch._foreach_add_(us, params, alpha=group["weight_decay"])
        p_norms = torch._foreach_norm(params)
        u_norms = torch._foreach_norm(us)
        trusts = [
            self._trust(group, p, w, u) for p, w, u in zip(params, p_norms, u_norms, strict=True)
        ]
        torch._foreach_mul_(us, trusts)
        torch._foreach_sub_(params, us, alpha=group["lr"])


class Lars(PerTensorOptimizer):
    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        trust_coefficient: float = 1e-3,
        eps: float = 0.0,
        trust_clip: bool = False,
        exclude_1d: bool = False,
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "trust_coefficient": trust_coefficient,
            "eps": eps,
            "trust_clip": trust_clip,
            "exclude_1d": exclude_1d,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def _state(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = self.state[p]
        if not state:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @staticmethod
    def _rate(
        group: dict[str, Any], p: torch.Tensor, w: torch.Tensor, g: torch.Tensor
    ) -> torch.Tensor:
        """γ_t · local for one tensor, as a 0-dim tensor on its device."""
        lr = group["lr"]
        if group["exclude_1d"] and p.ndim <= 1:
            return torch.full_like(w, lr)
        local = group["trust_coefficient"] * w / (g + group["weight_decay"] * w + group["eps"])
        local = _where_positive(local, w, g)
        return local.clamp(max=lr) if group["trust_clip"] else local * lr

    def _step_single(self, group: dict[str, Any], p: torch.Tensor, state: dict[str, Any]) -> None:
        assert p.grad is not None
        rate = self._rate(group, p, torch.linalg.vector_norm(p), torch.linalg.vector_norm(p.grad))
        d = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
        buf = state["momentum_buffer"]
        buf.mul_(group["momentum"]).add_(d * rate)
        p.sub_(buf)

    def _step_foreach(
        self, group: dict[str, Any], params: list[torch.Tensor], states: list[dict[str, Any]]
    ) -> None:
        grads = [p.grad for p in params if p.grad is not None]
        rates = [
            self._rate(group, p, w, g)
            for p, w, g in zip(
                params, torch._foreach_norm(params), torch._foreach_norm(grads), strict=True
            )
        ]
        if group["weight_decay"]:
            ds = list(torch._foreach_add(grads, params, alpha=group["weight_decay"]))
        else:
            ds = [g.clone() for g in grads]
        torch._foreach_mul_(ds, rates)
        bufs = [s["momentum_buffer"] for s in states]
        torch._foreach_mul_(bufs, group["momentum"])
        torch._foreach_add_(bufs, ds)
        torch._foreach_sub_(params, bufs)


@OPTIMIZERS.register(
    "lamb",
    settings=LambSettings,
    summary="LAMB: Adam with decay, rescaled per tensor by the trust ratio ‖θ‖/‖update‖",
    paper="Large Batch Optimization for Deep Learning: Training BERT in 76 minutes "
    "(You et al., 2020)",
)
def build_lamb(s: LambSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return Lamb(groups, **s.optimizer_kwargs())


@OPTIMIZERS.register(
    "lars",
    settings=LarsSettings,
    summary="LARS: SGD-M with a layer-wise learning rate η_T‖θ‖/(‖g‖ + β‖θ‖)",
    paper="Large Batch Training of Convolutional Networks (You et al., 2017)",
)
def build_lars(s: LarsSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return Lars(groups, **s.optimizer_kwargs())
