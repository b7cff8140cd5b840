"""`adafactor`: Adafactor: Adaptive Learning Rates with Sublinear Memory Cost (Shazeer & Stern,
2018).

The variant is the paper's Algorithms 4/5 as HF transformers' `Adafactor` (ported from fairseq)
implements them, the one whose defaults equal the paper's; warm-up of the relative step, weight
decay and momentum are HF/fairseq/t2t options that are off by default.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any

import torch
from pydantic import Field, model_validator

from trainlib.optim.base import OptimizerSettings, ParamGroups, RegimenOptimizer, use_foreach
from trainlib.registries import OPTIMIZERS

_Eps = Annotated[float, Field(gt=0, le=1)]


class AdafactorSettings(OptimizerSettings):
    """Adafactor: factored second moment, relative step size and update clipping.

    For a gradient G (n×m; tensors with more dims are batches of matrices over the last two):
        ρ_t = min(1e-6·t if warmup_init else 1e-2, 1/sqrt(t)) if relative_step, else lr
        α_t = max(ε2, RMS(θ_{t−1}))·ρ_t if scale_parameter, else ρ_t
        β̂2_t = 1 − t^decay_rate
        R ← β̂2_t R + (1 − β̂2_t) rowmean(G² + ε1);  C ← β̂2_t C + (1 − β̂2_t) colmean(G² + ε1)
        V̂ = R Cᵀ / mean(R)   (vectors keep a full V ← β̂2_t V + (1 − β̂2_t)(G² + ε1))
        U = G / sqrt(V̂);  Û = α_t U / max(1, RMS(U)/d)
        m ← β1 m + (1 − β1) Û  (only when beta1 > 0; the paper's default is β1 = 0)
        θ ← θ − λ α_t θ − (m or Û)   (weight decay as HF: scaled by α_t, RMS(θ) taken before it)
    While relative_step is on, `lr` (and so lr schedules and lr multipliers) has no effect.
    """

    lr: float = Field(
        1e-3,
        gt=0,
        le=10,
        description="fixed step size ρ; used only with relative_step: false",
    )
    relative_step: bool = Field(
        True, description="ρ_t = min(1e-2, 1/sqrt(t)) (the paper); false: ρ = lr"
    )
    warmup_init: bool = Field(
        False, description="ρ_t = min(1e-6·t, 1/sqrt(t)) (fairseq/HF, not in the paper)"
    )
    scale_parameter: bool = Field(True, description="multiply ρ_t by max(ε2, RMS(θ))")
    eps: tuple[_Eps, _Eps] = Field(
        (1e-30, 1e-3), description="(ε1 added to G², ε2 floor on RMS(θ)), each in (0, 1]"
    )
    clip_threshold: float = Field(1.0, gt=0, le=1e3, description="update clipping threshold d")
    decay_rate: float = Field(-0.8, ge=-1, le=0, description="β̂2_t = 1 − t^decay_rate")
    beta1: float = Field(0.0, ge=0, lt=1, description="momentum on the update; 0 = none (paper)")

    @model_validator(mode="after")
    def _warmup_needs_relative_step(self) -> AdafactorSettings:
        if self.warmup_init and not self.relative_step:
            raise ValueError("warmup_init needs relative_step: true")
        return self


def _factored(p: torch.Tensor) -> bool:
    return p.ndim >= 2


def _rms(x: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = torch.linalg.vector_norm(x) / math.sqrt(x.numel())
    return out


class Adafactor(RegimenOptimizer):
    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        relative_step: bool = True,
        warmup_init: bool = False,
        scale_parameter: bool = True,
        eps: tuple[float, float] = (1e-30, 1e-3),
        clip_threshold: float = 1.0,
        decay_rate: float = -0.8,
        beta1: float = 0.0,
        weight_decay: float = 0.0,
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "relative_step": relative_step,
            "warmup_init": warmup_init,
            "scale_parameter": scale_parameter,
            "eps": eps,
            "clip_threshold": clip_threshold,
            "decay_rate": decay_rate,
            "beta1": beta1,
            "weight_decay": weight_decay,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def _init_state(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            if _factored(p):
                # R: one value per row, C: one per column (of each matrix in the batch)
                state["exp_avg_sq_row"] = p.new_zeros(p.shape[:-1])
                state["exp_avg_sq_col"] = p.new_zeros(p.shape[:-2] + p.shape[-1:])
            else:
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["beta1"] > 0:
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @staticmethod
    def _relative_step(group: dict[str, Any], t: float) -> float:
        if not group["relative_step"]:
            return float(group["lr"])
        cap = 1e-6 * t if group["warmup_init"] else 1e-2
        return min(cap, 1.0 / math.sqrt(t))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._closure_loss(closure)
        for group, params in self._groups_with_grads():
            if use_foreach(group["foreach"], params):
                self._step_foreach(group, params)
            else:
                for p in params:
                    self._step_single(group, p)
        return loss

    def _step_size(self, group: dict[str, Any], p: torch.Tensor, t: float) -> torch.Tensor:
        """α_t as a 0-dim tensor on p's device (RMS(θ) stays on the device: no sync)."""
        rho = self._relative_step(group, t)
        if group["scale_parameter"]:
            return _rms(p).clamp(min=group["eps"][1]) * rho
        return torch.full((), rho, dtype=p.dtype, device=p.device)

    def _step_single(self, group: dict[str, Any], p: torch.Tensor) -> None:
        assert p.grad is not None
        grad = p.grad
        state = self._init_state(p, group)
        state["step"] += 1
        t = float(state["step"].item())
        alpha = self._step_size(group, p, t)
        beta2t = 1.0 - t ** group["decay_rate"]
        sq = grad * grad + group["eps"][0]
        if _factored(p):
            row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
            row.mul_(beta2t).add_(sq.mean(dim=-1), alpha=1.0 - beta2t)
            col.mul_(beta2t).add_(sq.mean(dim=-2), alpha=1.0 - beta2t)
            update = _approx_rsqrt(row, col).mul_(grad)
        else:
            v = state["exp_avg_sq"]
            v.mul_(beta2t).add_(sq, alpha=1.0 - beta2t)
            update = v.rsqrt().mul_(grad)
        update.div_((_rms(update) / group["clip_threshold"]).clamp_(min=1.0))
        update.mul_(alpha)
        if group["beta1"] > 0:
            m = state["exp_avg"]
            m.mul_(group["beta1"]).add_(update, alpha=1.0 - group["beta1"])
            update = m
        if group["weight_decay"] != 0:
            p.sub_(p * (alpha * group["weight_decay"]))
        p.sub_(update)

    def _step_foreach(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        grads = [p.grad for p in params if p.grad is not None]
        states = [self._init_state(p, group) for p in params]
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1.0)
        ts = [float(s.item()) for s in steps]  # CPU step counters: no device sync
        rhos = [self._relative_step(group, t) for t in ts]
        if group["scale_parameter"]:
            norms = torch._foreach_norm(params)
            torch._foreach_div_(norms, [math.sqrt(p.numel()) for p in params])
            torch._foreach_clamp_min_(norms, group["eps"][1])
            alphas = list(torch._foreach_mul(norms, rhos))
        else:
            alphas = [
                torch.full((), r, dtype=p.dtype, device=p.device)
                for r, p in zip(rhos, params, strict=True)
            ]
        beta2ts = [1.0 - t ** group["decay_rate"] for t in ts]
        keeps = [1.0 - b for b in beta2ts]
        sqs = torch._foreach_mul(grads, grads)
        torch._foreach_add_(sqs, group["eps"][0])

        updates: list[torch.Tensor] = [torch.empty(0)] * len(params)
        fac = [i for i, p in enumerate(params) if _factored(p)]
        full = [i for i, p in enumerate(params) if not _factored(p)]
        if fac:
            rows = [states[i]["exp_avg_sq_row"] for i in fac]
            cols = [states[i]["exp_avg_sq_col"] for i in fac]
            torch._foreach_mul_(rows, [beta2ts[i] for i in fac])
            torch._foreach_mul_(cols, [beta2ts[i] for i in fac])
            row_means = [sqs[i].mean(dim=-1) for i in fac]
            col_means = [sqs[i].mean(dim=-2) for i in fac]
            torch._foreach_mul_(row_means, [keeps[i] for i in fac])
            torch._foreach_mul_(col_means, [keeps[i] for i in fac])
            torch._foreach_add_(rows, row_means)
            torch._foreach_add_(cols, col_means)
            for i, row, col in zip(fac, rows, cols, strict=True):
                updates[i] = _approx_rsqrt(row, col)
        if full:
            vs = [states[i]["exp_avg_sq"] for i in full]
            torch._foreach_mul_(vs, [beta2ts[i] for i in full])
            torch._foreach_add_(
                vs, torch._foreach_mul([sqs[i] for i in full], [keeps[i] for i in full])
            )
            for i, u in zip(full, torch._foreach_rsqrt(vs), strict=True):
                updates[i] = u
        torch._foreach_mul_(updates, grads)

        # update clipping: Û = U / max(1, RMS(U)/d)
        rms = torch._foreach_norm(updates)
        torch._foreach_div_(rms, [math.sqrt(p.numel()) * group["clip_threshold"] for p in params])
        torch._foreach_clamp_min_(rms, 1.0)
        torch._foreach_div_(updates, rms)
        torch._foreach_mul_(updates, alphas)
        if group["beta1"] > 0:
            ms = [s["exp_avg"] for s in states]
            torch._foreach_mul_(ms, group["beta1"])
            torch._foreach_add_(ms, updates, alpha=1.0 - group["beta1"])
            updates = ms
        if group["weight_decay"] != 0:
            decay = torch._foreach_mul(alphas, group["weight_decay"])
            torch._foreach_sub_(params, torch._foreach_mul(params, decay))
        torch._foreach_sub_(params, updates)


def _approx_rsqrt(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """1/sqrt(V̂) with V̂ = R Cᵀ / mean(R), per matrix of the batch (as fairseq/HF)."""
    r = (row / row.mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)
    c = col.unsqueeze(-2).rsqrt()
    return r * c


@OPTIMIZERS.register(
    "adafactor",
    settings=AdafactorSettings,
    summary="Adafactor: factored second moment (row + column), relative step, update clipping",
    paper="Adafactor: Adaptive Learning Rates with Sublinear Memory Cost (Shazeer & Stern, 2018)",
)
def build_adafactor(s: AdafactorSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return Adafactor(groups, **s.optimizer_kwargs())
