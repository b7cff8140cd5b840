"""`fadam`: FAdam: Adam is a natural gradient optimizer using diagonal empirical Fisher information
(Hwang, 2024).

No first-party code was published; the rule follows the paper's structure as pytorch-optimizer 4.1
implements it (formulas file §10): adaptive ε = ε·min(1, RMS(g)), clipping by max(1, RMS/c),
momentum on the natural gradient without bias correction, Fisher-preconditioned clipped decay.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any

import torch
from pydantic import Field

from trainlib.optim.base import OptimizerSettings, ParamGroups, RegimenOptimizer, use_foreach
from trainlib.registries import OPTIMIZERS

_Beta = Annotated[float, Field(ge=0, lt=1)]


class FAdamSettings(OptimizerSettings):
    """FAdam: Adam read as a natural-gradient method with the diagonal empirical Fisher F.

        β̂2_t = β2 (1 − β2^(t−1)) / (1 − β2^t)   (bias correction folded into the EMA; β̂2_1 = 0)
        F ← β̂2_t F + (1 − β̂2_t) g²;  ε_t = ε·min(1, RMS(g))
        ḡ = g / (F^p + ε_t);  ḡ ← ḡ / max(1, RMS(ḡ)/c);  m ← β1 m + (1 − β1) ḡ
        w̄ = θ / (F^p + ε_t);  w̄ ← w̄ / max(1, RMS(w̄)/c)
        θ ← θ − η (m + λ w̄)
    Entries where F^p + ε_t = 0 (the whole gradient and that entry's history are zero) get
    ḡ = w̄ = 0 instead of the ports' 0/0 = NaN.
    """

    lr: float = Field(1e-3, gt=0, le=10)
    weight_decay: float = Field(
        0.1, ge=0, le=10, description="λ of the preconditioned decay (the ports' default)"
    )
    betas: tuple[_Beta, _Beta] = Field((0.9, 0.999), description="(β1, β2), each in [0, 1)")
    eps: float = Field(1e-8, ge=0, le=1, description="ε, scaled by min(1, RMS(g))")
    clip_threshold: float = Field(
        1.0, gt=0, le=1e3, description="RMS bound c of ḡ and w̄ (`clip` is gradient clipping)"
    )
    p: float = Field(0.5, gt=0, le=1, description="Fisher exponent (0.5: Adam's square root)")


class FAdam(RegimenOptimizer):
    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        clip_threshold: float = 1.0,
        p: float = 0.5,
        weight_decay: float = 0.1,
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "clip_threshold": clip_threshold,
            "p": p,
            "weight_decay": weight_decay,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

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

    def _state(self, p: torch.Tensor) -> dict[str, Any]:
        state: dict[str, Any] = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["fim"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @staticmethod
    def _fisher_beta(beta2: float, t: float) -> float:
        return float(beta2 * (1.0 - beta2 ** (t - 1)) / (1.0 - beta2**t))

    def _step_single(self, group: dict[str, Any], p: torch.Tensor) -> None:
        assert p.grad is not None
        grad = p.grad
        beta1, beta2 = group["betas"]
        c, lam = group["clip_threshold"], group["weight_decay"]
        state = self._state(p)
        state["step"] += 1
        b2 = self._fisher_beta(beta2, float(state["step"].item()))
        fim, m = state["fim"], state["momentum"]
        fim.mul_(b2).addcmul_(grad, grad, value=1.0 - b2)
        eps_t = _rms(grad).clamp(max=1.0) * group["eps"]
        denom = _safe(fim.pow(group["p"]).add_(eps_t))
        nat = grad / denom
        nat.div_((_rms(nat) / c).clamp_(min=1.0))
        m.mul_(beta1).add_(nat, alpha=1.0 - beta1)
        if lam != 0:
            w = p / denom
            w.div_((_rms(w) / c).clamp_(min=1.0))
            p.sub_(m.add(w, alpha=lam), alpha=group["lr"])
        else:
            p.sub_(m, alpha=group["lr"])

    def _step_foreach(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        grads = [p.grad for p in params if p.grad is not None]
        beta1, beta2 = group["betas"]
        c, lam = group["clip_threshold"], group["weight_decay"]
        states = [self._state(p) for p in params]
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1.0)
        b2s = [self._fisher_beta(beta2, float(t.item())) for t in steps]  # CPU counters
        fims = [s["fim"] for s in states]
        ms = [s["momentum"] for s in states]
        roots = [math.sqrt(p.numel()) for p in params]

        torch._foreach_mul_(fims, b2s)
        sq = torch._foreach_mul(grads, grads)
        torch._foreach_mul_(sq, [1.0 - b for b in b2s])
        torch._foreach_add_(fims, sq)
        eps_t = torch._foreach_norm(grads)
        torch._foreach_div_(eps_t, roots)
        torch._foreach_clamp_max_(eps_t, 1.0)
        torch._foreach_mul_(eps_t, group["eps"])
        powers = torch._foreach_pow(fims, group["p"])
        torch._foreach_add_(powers, eps_t)
        denoms = [_safe(d) for d in powers]

        nats = list(torch._foreach_div(grads, denoms))
        _clip_rms_(nats, roots, c)
        torch._foreach_mul_(ms, beta1)
        torch._foreach_add_(ms, nats, alpha=1.0 - beta1)
        if lam != 0:
            ws = list(torch._foreach_div(params, denoms))
            _clip_rms_(ws, roots, c)
            torch._foreach_mul_(ws, lam)
            torch._foreach_add_(ws, ms)
            torch._foreach_sub_(params, ws, alpha=group["lr"])
        else:
            torch._foreach_sub_(params, ms, alpha=group["lr"])


def _rms(x: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = torch.linalg.vector_norm(x) / math.sqrt(x.numel())
    return out


def _safe(denom: torch.Tensor) -> torch.Tensor:
    """0 → ∞, so that 0/0 (no gradient ever seen there) and θ/0 give 0 rather than NaN/∞."""
    out: torch.Tensor = denom.masked_fill_(denom == 0, math.inf)
    return out


def _clip_rms_(xs: list[torch.Tensor], roots: list[float], c: float) -> None:
    """x ← x / max(1, RMS(x)/c) for each tensor, without leaving the device."""
    scale = torch._foreach_norm(xs)
    torch._foreach_div_(scale, [r * c for r in roots])
    torch._foreach_clamp_min_(scale, 1.0)
    torch._foreach_div_(xs, scale)


@OPTIMIZERS.register(
    "fadam",
    settings=FAdamSettings,
    summary="FAdam: Adam as natural gradient with the diagonal empirical Fisher, clipped updates",
    paper="FAdam: Adam is a natural gradient optimizer using diagonal empirical Fisher "
    "information (Hwang, 2024)",
)
def build_fadam(s: FAdamSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return FAdam(groups, **s.optimizer_kwargs())
