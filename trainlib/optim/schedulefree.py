"""`schedulefree_adamw`: The Road Less Scheduled (Defazio et al., 2024), Schedule-Free AdamW.

Three sequences: z (the base AdamW-like iterate), x (a weighted average of the z's: evaluate here)
and y = β1 x + (1 − β1) z (where gradients are taken). As facebookresearch/schedule_free ≥ 1.3
(`AdamWScheduleFree`), with k the 0-based step count of the group:

    η_k = lr · min(1, (k+1)/warmup_steps) ;  η_max ← max(η_max, η_k)
    w_k = (k+1)^r · η_max^weight_lr_power ;  W ← W + w_k ;  c = w_k / W
    v ← β2 v + (1 − β2) g² ;  D = sqrt(v / (1 − β2^(k+1))) + ε
    u = g / D + λ y                                   (decay evaluated at y)
    z ← z − η_k u ;  x ← (1 − c) x + c z ;  y ← β1 x + (1 − β1) z

Like the authors' memory-lean class only y (in the parameter), z and v are kept, and y is
updated in place: y ← lerp(y, z, c) + η_k (β1 (1 − c) − 1) u. The parameter holds y in train mode
and x in eval mode: `eval()` writes x = lerp(y, z, 1 − 1/β1) and keeps y aside, `train()` puts y
back bit for bit (the authors recompute it by a second lerp, which rounds). The loop switches
modes through `trainlib.step.evaluation_weights`. Differences from the authors' class: the
optimizer starts in train mode (theirs must be told `train()` first) and `p.grad` is left as it
was. As theirs, `step()` refuses to run in eval mode, and k, η_max, W and the mode live in each
param group, so a state_dict round trip (y included when saved in eval mode) resumes exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any

import torch
from pydantic import Field

from trainlib.optim.base import OptimizerSettings, ParamGroups, RegimenOptimizer, use_foreach
from trainlib.registries import OPTIMIZERS


class ScheduleFreeAdamWSettings(OptimizerSettings):
    """Schedule-Free AdamW: no lr schedule needed; evaluate at the average x (eval mode)."""

    lr: float = Field(0.0025, gt=0, le=10)
    betas: tuple[Annotated[float, Field(gt=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = Field(
        (0.9, 0.999),
        description="(beta1, beta2): beta1 in (0, 1) interpolates y between x and z, beta2 is "
        "the second-moment EMA",
    )
    eps: float = Field(1e-8, gt=0, le=1)
    warmup_steps: int = Field(0, ge=0, le=10_000_000, description="linear lr warmup steps")
    r: float = Field(0.0, ge=0, le=100, description="polynomial weighting power of the average")
    weight_lr_power: float = Field(
        2.0, ge=0, le=100, description="average weights ∝ η_max^weight_lr_power"
    )


class ScheduleFreeAdamW(RegimenOptimizer):
    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        foreach: bool | None = None,
    ) -> None:
        if not 0.0 < betas[0] < 1.0:
            raise ValueError(f"betas[0] must be in (0, 1), got {betas[0]}")
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "warmup_steps": warmup_steps,
            "r": r,
            "weight_lr_power": weight_lr_power,
            "foreach": foreach,
            # running scalars, per group as in the authors' class
            "k": 0,
            "lr_max": -1.0,
            "weight_sum": 0.0,
            "train_mode": True,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def eval(self) -> None:
        """Put x (the average) into the parameters; y is kept aside until `train()`."""
        for group in self.param_groups:
            if not group["train_mode"]:
                continue
            beta1 = group["betas"][0]
            for p in group["params"]:
                state = self.state[p]
                if "z" in state:
                    state["y"] = p.detach().clone()
                    p.lerp_(state["z"], 1 - 1 / beta1)
            group["train_mode"] = False

    @torch.no_grad()
    def train(self) -> None:
        """Put y (the gradient point) back into the parameters."""
        for group in self.param_groups:
            if group["train_mode"]:
                continue
            beta1 = group["betas"][0]
            for p in group["params"]:
                state = self.state[p]
                if "y" in state:
                    p.copy_(state.pop("y"))
                elif "z" in state:  # no saved y (state loaded from elsewhere): recompute it
                    p.lerp_(state["z"], 1 - beta1)
            group["train_mode"] = True

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        if not all(group["train_mode"] for group in self.param_groups):
            raise RuntimeError("schedulefree_adamw: step() in eval mode; call train() first")
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            k = group["k"]
            warmup = group["warmup_steps"]
            lr = group["lr"] * ((k + 1) / warmup if k < warmup else 1.0)
            group["lr_max"] = lr_max = max(lr, group["lr_max"])
            weight = (k + 1) ** group["r"] * lr_max ** group["weight_lr_power"]
            group["weight_sum"] = weight_sum = group["weight_sum"] + weight
            ckp1 = weight / weight_sum if weight_sum != 0 else 0.0
            group["k"] = k + 1

            params = self._params_with_grad(group)
            if not params:
                continue
            for p in params:
                state = self.state[p]
                if "z" not in state:
                    state["z"] = p.detach().clone(memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            args = (group, params, k, lr, ckp1)
            if use_foreach(group["foreach"], params):
                self._foreach(*args)
            else:
                self._single(*args)
        return loss

    def _single(
        self, group: dict[str, Any], params: list[torch.Tensor], k: int, lr: float, ckp1: float
    ) -> None:
        beta1, beta2 = group["betas"]
        bias_correction2 = 1 - beta2 ** (k + 1)
        for y in params:
            assert y.grad is not None
            grad, state = y.grad, self.state[y]
            z, v = state["z"], state["exp_avg_sq"]
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = v.div(bias_correction2).sqrt_().add_(group["eps"])
            u = grad.div(denom)
            if group["weight_decay"] != 0:
                u.add_(y, alpha=group["weight_decay"])
            y.lerp_(z, ckp1)
            y.add_(u, alpha=lr * (beta1 * (1 - ckp1) - 1))
            z.sub_(u, alpha=lr)

    def _foreach(
        self, group: dict[str, Any], params: list[torch.Tensor], k: int, lr: float, ckp1: float
    ) -> None:
        beta1, beta2 = group["betas"]
        bias_correction2 = 1 - beta2 ** (k + 1)
        grads = [p.grad for p in params if p.grad is not None]
        zs = [self.state[p]["z"] for p in params]
        vs = [self.state[p]["exp_avg_sq"] for p in params]
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
        denom = torch._foreach_div(vs, bias_correction2)
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, group["eps"])
        u = torch._foreach_div(grads, denom)
        if group["weight_decay"] != 0:
            torch._foreach_add_(u, params, alpha=group["weight_decay"])
        torch._foreach_lerp_(params, zs, ckp1)
        torch._foreach_add_(params, u, alpha=lr * (beta1 * (1 - ckp1) - 1))
        torch._foreach_sub_(zs, u, alpha=lr)


@OPTIMIZERS.register(
    "schedulefree_adamw",
    settings=ScheduleFreeAdamWSettings,
    summary="Schedule-Free AdamW: iterate averaging instead of an lr schedule (eval at x)",
    paper="The Road Less Scheduled (Defazio, Yang, Mehta, Mishchenko, Khaled, Cutkosky, 2024)",
)
def build_schedulefree_adamw(
    s: ScheduleFreeAdamWSettings, groups: ParamGroups
) -> torch.optim.Optimizer:
    return ScheduleFreeAdamW(groups, **s.optimizer_kwargs())
