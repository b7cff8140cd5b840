"""Optimizers torch already has, used as torch defines them (with the foreach path).

Where torch has the algorithm we use torch's class, so ours matches torch's to the last bit. The
two additions are `adamw` with `decay="independent"` (Wortsman et al.'s schedule-only decay, a thin
AdamW subclass) and lazily created Adagrad state (torch creates it at construction, for every
parameter, even those that never get a gradient).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from trainlib.optim.base import (
    BetasSettings,
    OptimizerSettings,
    ParamGroups,
    closure_loss,
    use_foreach,
)
from trainlib.optim.decay import (
    IndependentDecaySettings,
    independent_decay_factor,
    remember_base_lr,
)
from trainlib.registries import OPTIMIZERS


class SGDSettings(OptimizerSettings):
    """SGD with (Nesterov) momentum and coupled L2 weight decay, as torch.optim.SGD."""

    lr: float = Field(0.1, gt=0, le=10)
    momentum: float = Field(0.0, ge=0, lt=1)
    dampening: float = Field(0.0, ge=0, le=1)
    nesterov: bool = False

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGDSettings:
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening = 0")
        return self


class _MomentSettings(BetasSettings):
    """Betas and ε of the Adam family."""

    betas: tuple[float, float] = Field((0.9, 0.999), description="(beta1, beta2), each in [0, 1)")
    eps: float = Field(1e-8, gt=0, le=1)


class AdamSettings(_MomentSettings):
    """Adam: bias-corrected first and second moments; weight decay is coupled L2."""

    amsgrad: bool = False


class AdamWSettings(AdamSettings, IndependentDecaySettings):
    """AdamW: Adam with weight decay decoupled from the gradient (torch.optim.AdamW; Decoupled
    Weight Decay Regularization, Loshchilov & Hutter, 2019).

    decay="coupled_lr" (torch): θ ← θ·(1 − η_t λ), then the Adam step.
    decay="independent" (Small-scale proxies for large-scale Transformer training instabilities,
    Wortsman et al., 2023): θ ← θ·(1 − (η_t/η_max) λ), η_max the group's lr before any scheduler,
    so λ no longer scales with the peak lr. Its default λ is the paper's 1e-4 (1e-2 at that scale
    would shrink every weight by 1% a step).
    """

    independent_default_decay = 1e-4  # the paper's

    weight_decay: float = Field(
        1e-2,
        ge=0,
        le=10,
        description="λ; default 1e-2 (torch), or 1e-4 (the paper's) with decay='independent'",
    )
    decay: Literal["coupled_lr", "independent"] = Field(
        "coupled_lr",
        description="coupled_lr: θ·(1 − η_t λ) (torch AdamW); independent: θ·(1 − (η_t/η_max) λ) "
        "(Wortsman et al.)",
    )

    @model_validator(mode="after")
    def _independent_decay_at_most_one(self) -> AdamWSettings:
        self.check_independent_decay()
        return self


class AdamWIndependentDecay(torch.optim.AdamW):
    """torch AdamW whose decay is θ·(1 − (η_t/η_max) λ) instead of θ·(1 − η_t λ).

    The decay is applied here (to θ_{t−1}, before the update, as torch does), then torch's AdamW
    step runs with weight_decay 0; the Adam update does not depend on θ, so the order is exact.
    """

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        remember_base_lr(self.param_groups[-1])

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:  # the closure must see θ before the decay, as in torch AdamW
            with torch.enable_grad():
                loss = closure()
        saved = [group["weight_decay"] for group in self.param_groups]
        for group in self.param_groups:
            if group["weight_decay"] == 0:
                continue
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            factor = independent_decay_factor(group)
            if use_foreach(group["foreach"], params):
                torch._foreach_mul_(params, factor)
            else:
                for p in params:
                    p.mul_(factor)
        try:
            for group in self.param_groups:
                group["weight_decay"] = 0.0
            super().step()
        finally:
            for group, decay in zip(self.param_groups, saved, strict=True):
                group["weight_decay"] = decay
        return loss


class NAdamSettings(_MomentSettings):
    """NAdam (torch.optim.NAdam): Adam with Nesterov momentum and Dozat's μ_t schedule
    μ_t = β1 (1 − ½·0.96^(t ψ)), ψ = momentum_decay.

    m, v as Adam; D = sqrt(v/(1 − β2^t)) + ε;
    θ ← θ − η (1 − μ_t)/(1 − Π μ_i) · g/D − η μ_{t+1}/(1 − Π μ_i · μ_{t+1}) · m/D.
    Weight decay: coupled L2 (g + λθ), or θ·(1 − ηλ) with decoupled_weight_decay (NAdamW).
    Paper: Incorporating Nesterov Momentum into Adam (Dozat, 2016).
    """

    lr: float = Field(2e-3, gt=0, le=10)
    momentum_decay: float = Field(4e-3, ge=0, le=1, description="ψ of the μ_t schedule")
    decoupled_weight_decay: bool = Field(False, description="θ·(1 − ηλ) instead of L2")


class NAdam(torch.optim.NAdam):
    """torch NAdam, whose `mu_product` survives a state-dict round trip unchanged.

    torch keeps mu_product as a CPU scalar in float32 (float64 under a float64 default dtype),
    but its load_state_dict casts every non-`step` state tensor to the parameter's dtype and
    device, so a resumed float64 run would continue with a float64 product and differ from the
    uninterrupted run in the last bits. The update itself is torch's.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        for group in self.param_groups:
            if group["capturable"]:  # then torch keeps it on the parameter's device itself
                continue
            for p in group["params"]:
                state = self.state.get(p)
                if state and "mu_product" in state:
                    state["mu_product"] = state["mu_product"].to(dtype=scalar, device="cpu")


class RAdamSettings(_MomentSettings):
    """RAdam (torch.optim.RAdam): Adam with the variance of the adaptive lr rectified.

    ρ∞ = 2/(1 − β2) − 1, ρ_t = ρ∞ − 2tβ2^t/(1 − β2^t); while ρ_t ≤ 5 (the first 5 steps at
    β2 = 0.999) the step is plain momentum θ ← θ − η m̂; afterwards
    θ ← θ − η m̂ r_t sqrt(1 − β2^t)/(sqrt(v) + ε), r_t = sqrt((ρ_t−4)(ρ_t−2)ρ∞/((ρ∞−4)(ρ∞−2)ρ_t)).
    Weight decay: coupled L2, or θ·(1 − ηλ) with decoupled_weight_decay.
    Paper: On the Variance of the Adaptive Learning Rate and Beyond (Liu et al., 2020).
    """

    decoupled_weight_decay: bool = Field(False, description="θ·(1 − ηλ) instead of L2")


class RMSpropSettings(OptimizerSettings):
    """RMSprop (torch.optim.RMSprop): g ← g + λθ; v ← αv + (1 − α)g²; optionally centered
    (ḡ ← αḡ + (1 − α)g, v − ḡ² in place of v); d = g/(sqrt(v) + ε);
    with momentum b ← μb + d, θ ← θ − ηb, else θ ← θ − ηd.
    Source: Lecture 6.5, RMSprop (Tieleman & Hinton, 2012); centered as Graves (2013).
    """

    lr: float = Field(1e-2, gt=0, le=10)
    alpha: float = Field(0.99, ge=0, lt=1, description="smoothing constant of the squared average")
    eps: float = Field(1e-8, gt=0, le=1)
    momentum: float = Field(0.0, ge=0, lt=1)
    centered: bool = Field(False, description="normalise by an estimate of the gradient variance")


class AdagradSettings(OptimizerSettings):
    """Adagrad (torch.optim.Adagrad): η_t = η/(1 + (t − 1)·lr_decay); g ← g + λθ;
    s ← s + g²; θ ← θ − η_t g/(sqrt(s) + ε), s starting at initial_accumulator_value.
    Paper: Adaptive Subgradient Methods for Online Learning and Stochastic Optimization
    (Duchi, Hazan & Singer, 2011).
    """

    lr: float = Field(1e-2, gt=0, le=10)
    lr_decay: float = Field(0.0, ge=0, le=1, description="η_t = η / (1 + (t − 1) lr_decay)")
    initial_accumulator_value: float = Field(0.0, ge=0, le=1e3)
    eps: float = Field(1e-10, gt=0, le=1)


class LazyAdagrad(torch.optim.Adagrad):
    """torch Adagrad with its state created at a parameter's first gradient, as torch's other
    optimizers do: torch's creates it for every parameter at construction, so frozen parameters
    would hold an accumulator. The update is torch's own."""

    def __init__(self, params: Any, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.state.clear()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = closure_loss(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and not self.state[p]:
                    # what torch.optim.Adagrad.__init__ would have created
                    init = group["initial_accumulator_value"]
                    scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else None
                    self.state[p]["step"] = torch.tensor(0.0, dtype=scalar or torch.float32)
                    self.state[p]["sum"] = torch.full_like(
                        p,
                        complex(init, init) if torch.is_complex(p) else init,
                        memory_format=torch.preserve_format,
                    )
        super().step()
        return loss


def _fused_kwargs(s: OptimizerSettings, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """optimizer_kwargs plus torch's fused kernel, unless a (foreach or loop) path is chosen."""
    return {**s.optimizer_kwargs(drop), "fused": s.foreach is None}


@OPTIMIZERS.register(
    "sgd",
    settings=SGDSettings,
    summary="SGD with momentum, Nesterov and coupled L2 weight decay (torch.optim.SGD)",
)
def build_sgd(s: SGDSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, **_fused_kwargs(s))


@OPTIMIZERS.register(
    "adam",
    settings=AdamSettings,
    summary="Adam: adaptive moment estimation (torch.optim.Adam)",
    paper="Adam: A Method for Stochastic Optimization (Kingma & Ba, 2015)",
)
def build_adam(s: AdamSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, **_fused_kwargs(s))


@OPTIMIZERS.register(
    "adamw",
    settings=AdamWSettings,
    summary="AdamW: Adam with decoupled weight decay (torch.optim.AdamW), lr-coupled or "
    "independent of the peak lr",
    paper="Decoupled Weight Decay Regularization (Loshchilov & Hutter, 2019)",
)
def build_adamw(s: AdamWSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    if s.decay == "coupled_lr":
        return torch.optim.AdamW(groups, **_fused_kwargs(s, drop=("decay",)))
    return AdamWIndependentDecay(groups, **s.optimizer_kwargs(drop=("decay",)))


@OPTIMIZERS.register(
    "nadam",
    settings=NAdamSettings,
    summary="NAdam: Adam with Nesterov momentum (torch.optim.NAdam; NAdamW when decoupled)",
    paper="Incorporating Nesterov Momentum into Adam (Dozat, 2016)",
)
def build_nadam(s: NAdamSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return NAdam(groups, **s.optimizer_kwargs())


@OPTIMIZERS.register(
    "radam",
    settings=RAdamSettings,
    summary="RAdam: Adam with a rectified adaptive learning rate (torch.optim.RAdam)",
    paper="On the Variance of the Adaptive Learning Rate and Beyond (Liu et al., 2020)",
)
def build_radam(s: RAdamSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return torch.optim.RAdam(groups, **s.optimizer_kwargs())


@OPTIMIZERS.register(
    "rmsprop",
    settings=RMSpropSettings,
    summary="RMSprop: gradient scaled by a running RMS, optionally centered (torch.optim.RMSprop)",
    paper="Lecture 6.5, RMSprop: Divide the gradient by a running average of its recent "
    "magnitude (Tieleman & Hinton, 2012)",
)
def build_rmsprop(s: RMSpropSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(groups, **s.optimizer_kwargs())


@OPTIMIZERS.register(
    "adagrad",
    settings=AdagradSettings,
    summary="Adagrad: per-coordinate lr from the sum of squared gradients (torch.optim.Adagrad)",
    paper="Adaptive Subgradient Methods for Online Learning and Stochastic Optimization "
    "(Duchi, Hazan & Singer, 2011)",
)
def build_adagrad(s: AdagradSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return LazyAdagrad(groups, **s.optimizer_kwargs())
