"""`momo` and `momo_adam`: MoMo: Momentum Models for Adaptive Learning Rates (Schaipp et al., 2024).

Semantics of the authors' code (fabian-sp/MoMo, momo/momo.py and momo/momo_adam.py): the step size
τ is a Polyak-type step on a model of the loss built from averaged gradients, averaged loss values
and averaged ⟨θ, g⟩, capped by the learning rate; weight decay is proximal (θ / (1 + ηλ)).
The sums ⟨θ, d⟩, γ, ‖d‖² run over every parameter of every group, as in the authors' code; each
group then takes its own τ with its own lr, weight decay and lower bound. Both need the loss:
`step(loss=<tensor>)` (what the training loop calls) or `step(closure)`.

Beyond the authors' code: parameters without a gradient are skipped (the authors' MoMo requires
every parameter to have one), their state starts at their first gradient, and ‖d‖² = 0 gives τ = 0
instead of a 0/0. The averaged loss f̄ and the online lower bound are shared by all groups and use
the last group's β (as the authors' MoMo-Adam does). τ stays a device tensor (the authors call
.item()), so a step does not wait for the device. MoMo-Adam's D uses each parameter's own step
count in both the sums and the update (the authors use the global count in the update; the two
differ only for a parameter that has missed gradients).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import torch
from pydantic import Field

from trainlib.optim.base import OptimizerSettings, ParamGroups, RegimenOptimizer, use_foreach
from trainlib.registries import OPTIMIZERS

_Beta = Annotated[float, Field(ge=0, lt=1)]
#: key of the state shared by all parameters (step count, f̄, online lower bound) in self.state
_SHARED = "shared"


class MomoSettings(OptimizerSettings):
    """MoMo (model-based momentum): SGD-M with an adaptive Polyak-type step size.

    ρ_k = 1 − β^k if bias_correction else 1; all EMAs start at the first values without bias
    correction and at 0 with it:
        f̄ ← β f̄ + (1 − β) f_k;  d ← β d + (1 − β) g_k;  γ ← β γ + (1 − β) ⟨θ_k, g_k⟩
        τ = min(η/ρ_k, max((1 + ηλ)(f̄ − ρ_k f_*) + ⟨θ_k, d⟩ − (1 + ηλ) γ, 0) / ‖d‖²)
        θ ← (θ − τ d) / (1 + ηλ)
    f_* = lb, or with use_fstar an online estimate floored at lb. The learning rate is only a cap:
    the default 1.0 is the authors' and works without tuning on many problems.
    """

    lr: float = Field(1.0, gt=0, le=100, description="cap η on the adaptive step size")
    beta: float = Field(0.9, ge=0, lt=1, description="momentum of d, γ and f̄")
    lb: float = Field(
        0.0, ge=-1e12, le=1e12, description="lower bound f_* on the loss (0 for most losses)"
    )
    bias_correction: bool = Field(
        False, description="zero-initialised averages with ρ_k = 1 − β^k (the paper's MoMo-BC)"
    )
    use_fstar: bool = Field(False, description="estimate the lower bound online (floored at lb)")


class MomoAdamSettings(OptimizerSettings):
    """MoMo-Adam: Adam's preconditioner D with MoMo's adaptive step size.

    d ← β1 d + (1 − β1) g;  v ← β2 v + (1 − β2) g²;  γ ← β1 γ + (1 − β1) ⟨θ, g⟩
    f̄ ← β1 f̄ + (1 − β1) f  (all start at 0);  D = sqrt(v/(1 − β2^k)) + ε;  c_k = 1 − β1^k
    τ = min(η/c_k, max((1 + ηλ)(f̄ − c_k f_*) + ⟨θ, d⟩ − (1 + ηλ) γ, 0) / Σ d²/D)
    divide: θ ← (θ − τ d/D) / (1 + ηλ);  otherwise θ ← θ(1 − ηλ) − τ d/D  (AdamW-like)
    """

    lr: float = Field(1e-2, gt=0, le=100, description="cap η on the adaptive step size")
    betas: tuple[_Beta, _Beta] = Field((0.9, 0.999), description="(β1, β2), each in [0, 1)")
    eps: float = Field(1e-8, gt=0, le=1)
    lb: float = Field(
        0.0, ge=-1e12, le=1e12, description="lower bound f_* on the loss (0 for most losses)"
    )
    divide: bool = Field(True, description="proximal decay θ/(1 + ηλ); false: θ(1 − ηλ)")
    use_fstar: bool = Field(False, description="estimate the lower bound online (floored at lb)")


def _the_loss(closure: Callable[[], Any] | None, loss: Any) -> Any:
    if closure is not None and loss is not None:
        raise ValueError("pass either the loss or a closure, not both")
    if closure is not None:
        with torch.enable_grad():
            return closure()
    if loss is None:
        raise ValueError("MoMo needs the loss: step(loss=loss) or step(closure)")
    return loss


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.sum(a * b)


class _MomoBase(RegimenOptimizer):
    needs_loss = True

    def _shared(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        shared: dict[str, torch.Tensor] | None = self.state.get(_SHARED)  # type: ignore[call-overload]
        if shared is None:
            shared = {
                "step": torch.tensor(0.0, dtype=torch.float32),
                "loss_avg": like.new_zeros(()),
                "lb": like.new_full((), float(self.param_groups[0]["lb"])),
            }
            self.state[_SHARED] = shared  # type: ignore[index]
        return shared

    def _step_size(
        self,
        group: dict[str, Any],
        shared: dict[str, torch.Tensor],
        sums: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        rho: float,
    ) -> torch.Tensor:
        """τ for one group; with use_fstar also moves the shared lower bound (authors' order)."""
        dot, gamma, norm = sums
        lr, lam = group["lr"], group["weight_decay"]
        k = 1.0 + lr * lam
        loss_avg = shared["loss_avg"]
        if group["use_fstar"]:
            cap = k * loss_avg + dot - k * gamma
            reset = (cap / (2 * k * rho)).clamp(min=group["lb"])
            shared["lb"] = torch.where(cap < k * rho * shared["lb"], reset, shared["lb"])
            lb = shared["lb"]
        else:
            lb = loss_avg.new_full((), float(group["lb"]))
        nom = k * (loss_avg - rho * lb) + dot - k * gamma
        t1 = nom.clamp(min=0) / norm
        # ‖d‖² = 0 means d = 0: no step (the authors' 0/0 would give NaN · 0)
        tau = torch.where(norm > 0, t1.clamp(max=lr / rho), torch.zeros_like(t1))
        if group["use_fstar"]:
            h = loss_avg + dot - gamma
            shared["lb"] = ((h - 0.5 * tau * norm) / rho).clamp(min=group["lb"])
        return tau


class Momo(_MomoBase):
    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        beta: float = 0.9,
        lb: float = 0.0,
        bias_correction: bool = False,
        use_fstar: bool = False,
        weight_decay: float = 0.0,
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "beta": beta,
            "lb": lb,
            "bias_correction": bias_correction,
            "use_fstar": use_fstar,
            "weight_decay": weight_decay,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def _state(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = self.state[p]
        if not state:
            assert p.grad is not None
            if group["bias_correction"]:
                state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["grad_dot_w"] = p.new_zeros(())
            else:  # the first values: the EMA update below then leaves them as they are
                state["grad_avg"] = p.grad.detach().clone(memory_format=torch.preserve_format)
                state["grad_dot_w"] = _dot(p, p.grad)
        return state

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, loss: Any = None) -> Any:
        loss = _the_loss(closure, loss)
        groups = self._groups_with_grads()
        if not groups:
            return loss
        first = groups[0][1][0]
        shared = self._shared(first)
        shared["step"] = shared["step"] + 1
        k = float(shared["step"].item())  # a CPU counter: no device sync
        beta = groups[-1][0]["beta"]
        f = torch.as_tensor(loss).detach().to(dtype=first.dtype, device=first.device)
        if k == 1 and not groups[-1][0]["bias_correction"]:
            shared["loss_avg"] = f.clone()
        shared["loss_avg"] = beta * shared["loss_avg"] + (1 - beta) * f

        dot, gamma, norm = first.new_zeros(()), first.new_zeros(()), first.new_zeros(())
        for group, params in groups:
            states = [self._state(p, group) for p in params]
            if use_foreach(group["foreach"], params):
                d, g, n = self._accumulate_foreach(group, params, states)
            else:
                d, g, n = self._accumulate_single(group, params, states)
            dot, gamma, norm = dot + d, gamma + g, norm + n

        for group, params in groups:
            rho = 1.0 - group["beta"] ** k if group["bias_correction"] else 1.0
            tau = self._step_size(group, shared, (dot, gamma, norm), rho)
            avgs = [self.state[p]["grad_avg"] for p in params]
            shrink = 1.0 + group["lr"] * group["weight_decay"]
            if use_foreach(group["foreach"], params):
                torch._foreach_sub_(params, torch._foreach_mul(avgs, tau))
                if group["weight_decay"] > 0:
                    torch._foreach_div_(params, shrink)
            else:
                for p, avg in zip(params, avgs, strict=True):
                    p.sub_(avg * tau)
                    if group["weight_decay"] > 0:
                        p.div_(shrink)
        return loss

    @staticmethod
    def _accumulate_single(
        group: dict[str, Any], params: list[torch.Tensor], states: list[dict[str, Any]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        beta = group["beta"]
        dot = gamma = norm = params[0].new_zeros(())
        for p, state in zip(params, states, strict=True):
            assert p.grad is not None
            avg, gdw = state["grad_avg"], state["grad_dot_w"]
            avg.mul_(beta).add_(p.grad, alpha=1 - beta)
            gdw.mul_(beta).add_(_dot(p, p.grad), alpha=1 - beta)
            dot = dot + _dot(p, avg)
            gamma = gamma + gdw
            norm = norm + _dot(avg, avg)
        return dot, gamma, norm

    @staticmethod
    def _accumulate_foreach(
        group: dict[str, Any], params: list[torch.Tensor], states: list[dict[str, Any]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        beta = group["beta"]
        grads = [p.grad for p in params if p.grad is not None]
        avgs = [s["grad_avg"] for s in states]
        gdws = [s["grad_dot_w"] for s in states]
        torch._foreach_mul_(avgs, beta)
        torch._foreach_add_(avgs, grads, alpha=1 - beta)
        torch._foreach_mul_(gdws, beta)
        torch._foreach_add_(gdws, _sums(torch._foreach_mul(params, grads)), alpha=1 - beta)
        dot = torch.stack(_sums(torch._foreach_mul(params, avgs))).sum()
        norm = torch.stack(_sums(torch._foreach_mul(avgs, avgs))).sum()
        return dot, torch.stack(gdws).sum(), norm


class MomoAdam(_MomoBase):
    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        lb: float = 0.0,
        divide: bool = True,
        use_fstar: bool = False,
        weight_decay: float = 0.0,
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "lb": lb,
            "divide": divide,
            "use_fstar": use_fstar,
            "weight_decay": weight_decay,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def _state(self, p: torch.Tensor) -> dict[str, Any]:
        state: dict[str, Any] = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["grad_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["grad_dot_w"] = p.new_zeros(())
        return state

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, loss: Any = None) -> Any:
        loss = _the_loss(closure, loss)
        groups = self._groups_with_grads()
        if not groups:
            return loss
        first = groups[0][1][0]
        shared = self._shared(first)
        shared["step"] = shared["step"] + 1
        k = float(shared["step"].item())  # a CPU counter: no device sync

        dot, gamma, norm = first.new_zeros(()), first.new_zeros(()), first.new_zeros(())
        precond: dict[torch.Tensor, torch.Tensor] = {}
        for group, params in groups:
            states = [self._state(p) for p in params]
            if use_foreach(group["foreach"], params):
                sums, denoms = self._accumulate_foreach(group, params, states)
            else:
                sums, denoms = self._accumulate_single(group, params, states)
            dot, gamma, norm = dot + sums[0], gamma + sums[1], norm + sums[2]
            precond.update(zip(params, denoms, strict=True))

        beta1 = groups[-1][0]["betas"][0]  # f̄ uses the last group's β1, as the authors' code
        f = torch.as_tensor(loss).detach().to(dtype=first.dtype, device=first.device)
        shared["loss_avg"] = (1 - beta1) * f + beta1 * shared["loss_avg"]

        for group, params in groups:
            bc1 = 1.0 - group["betas"][0] ** k
            tau = self._step_size(group, shared, (dot, gamma, norm), bc1)
            lr, lam = group["lr"], group["weight_decay"]
            avgs = [self.state[p]["grad_avg"] for p in params]
            denoms = [precond[p] for p in params]
            if use_foreach(group["foreach"], params):
                if lam > 0 and not group["divide"]:
                    torch._foreach_mul_(params, 1 - lam * lr)
                steps = torch._foreach_div(avgs, denoms)
                torch._foreach_mul_(steps, tau)
                torch._foreach_sub_(params, steps)
                if lam > 0 and group["divide"]:
                    torch._foreach_div_(params, 1 + lam * lr)
            else:
                for p, avg, denom in zip(params, avgs, denoms, strict=True):
                    if lam > 0 and not group["divide"]:
                        p.mul_(1 - lam * lr)
                    p.sub_(avg.div(denom).mul_(tau))
                    if lam > 0 and group["divide"]:
                        p.div_(1 + lam * lr)
        return loss

    @staticmethod
    def _accumulate_single(
        group: dict[str, Any], params: list[torch.Tensor], states: list[dict[str, Any]]
    ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], list[torch.Tensor]]:
        beta1, beta2 = group["betas"]
        dot = gamma = norm = params[0].new_zeros(())
        denoms = []
        for p, state in zip(params, states, strict=True):
            assert p.grad is not None
            grad = p.grad
            state["step"] += 1
            avg, sq, gdw = state["grad_avg"], state["grad_avg_sq"], state["grad_dot_w"]
            avg.mul_(beta1).add_(grad, alpha=1 - beta1)
            sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            gdw.mul_(beta1).add_(_dot(p, grad), alpha=1 - beta1)
            bc2 = 1 - beta2 ** float(state["step"].item())
            denom = sq.div(bc2).sqrt_().add_(group["eps"])
            denoms.append(denom)
            dot = dot + _dot(p, avg)
            gamma = gamma + gdw
            norm = norm + torch.sum(avg * avg / denom)
        return (dot, gamma, norm), denoms

    @staticmethod
    def _accumulate_foreach(
        group: dict[str, Any], params: list[torch.Tensor], states: list[dict[str, Any]]
    ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], list[torch.Tensor]]:
        beta1, beta2 = group["betas"]
        grads = [p.grad for p in params if p.grad is not None]
        steps = [s["step"] for s in states]
        avgs = [s["grad_avg"] for s in states]
        sqs = [s["grad_avg_sq"] for s in states]
        gdws = [s["grad_dot_w"] for s in states]
        torch._foreach_add_(steps, 1.0)
        torch._foreach_mul_(avgs, beta1)
        torch._foreach_add_(avgs, grads, alpha=1 - beta1)
        torch._foreach_mul_(sqs, beta2)
        torch._foreach_addcmul_(sqs, grads, grads, value=1 - beta2)
        torch._foreach_mul_(gdws, beta1)
        torch._foreach_add_(gdws, _sums(torch._foreach_mul(params, grads)), alpha=1 - beta1)
        denoms = torch._foreach_div(sqs, [1 - beta2 ** float(t.item()) for t in steps])
        torch._foreach_sqrt_(denoms)
        torch._foreach_add_(denoms, group["eps"])
        dot = torch.stack(_sums(torch._foreach_mul(params, avgs))).sum()
        weighted = torch._foreach_mul(avgs, avgs)
        torch._foreach_div_(weighted, denoms)
        norm = torch.stack(_sums(weighted)).sum()
        return (dot, torch.stack(gdws).sum(), norm), list(denoms)


def _sums(xs: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    return [x.sum() for x in xs]


@OPTIMIZERS.register(
    "momo",
    settings=MomoSettings,
    summary="MoMo: SGD-M with a Polyak-type adaptive step from a model of the loss (needs loss)",
    paper="MoMo: Momentum Models for Adaptive Learning Rates (Schaipp et al., 2024)",
)
def build_momo(s: MomoSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return Momo(groups, **s.optimizer_kwargs())


@OPTIMIZERS.register(
    "momo_adam",
    settings=MomoAdamSettings,
    summary="MoMo-Adam: Adam's preconditioner with MoMo's adaptive step size (needs loss)",
    paper="MoMo: Momentum Models for Adaptive Learning Rates (Schaipp et al., 2024)",
)
def build_momo_adam(s: MomoAdamSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return MomoAdam(groups, **s.optimizer_kwargs())
