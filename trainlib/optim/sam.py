"""Sharpness-aware step strategies that wrap any base optimizer: `sam` and `asam`.

SAM (Sharpness-Aware Minimization for Efficiently Improving Generalization):
    g = ∇L(w);  ε̂ = ρ g / ‖g‖  (global L2 norm);  g' = ∇L(w + ε̂);  restore w;  base step with g'.
ASAM (ASAM: Adaptive Sharpness-Aware Minimization for Scale-Invariant Learning of Deep Neural
Networks), element-wise operator T = |w| + η for parameters named "weight", T = 1 otherwise:
    ε̂ = ρ T² ⊙ g / ‖T ⊙ g‖.
The loop owns the two passes (trainlib.step.train_step): batch-norm statistics are kept from the
first pass only and the logged loss is the first pass's. `step(closure)` works standalone too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from trainlib.optim.build import build_optimizer
from trainlib.registries import OPTIMIZERS

WRAPPERS = ("sam", "asam")


class _SamBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base: Any = Field(
        default_factory=lambda: {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        description="the base optimizer's spec, e.g. {name: sgd, lr: 0.1, momentum: 0.9}",
        json_schema_extra={"type": "object"},
    )

    @field_validator("base", mode="before")
    @classmethod
    def _valid_base(cls, value: Any) -> Any:
        if not isinstance(value, dict | BaseModel):
            raise ValueError("base must be an optimizer spec such as {name: sgd, lr: 0.1}")
        raw = value.model_dump() if isinstance(value, BaseModel) else value
        if raw.get("name") in WRAPPERS:
            raise ValueError(f"base cannot itself be {raw['name']!r}: name a plain optimizer")
        if raw.get("name") not in OPTIMIZERS:
            valid = ", ".join(n for n in OPTIMIZERS.names() if n not in WRAPPERS)
            raise ValueError(f"unknown base optimizer {raw.get('name')!r}; valid names: {valid}")
        try:
            return OPTIMIZERS.settings_for(raw)
        except ValueError as exc:  # pydantic's ValidationError: name each field that is wrong
            errors = getattr(exc, "errors", None)
            if callable(errors):
                lines = [
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                    for e in errors(include_url=False)
                ]
                raise ValueError("; ".join(lines)) from None
            raise


class SamSettings(_SamBase):
    """SAM: minimise the loss at the worst point of a ρ-ball around the weights."""

    rho: float = Field(0.05, gt=0, le=10, description="radius of the neighbourhood")


class AsamSettings(_SamBase):
    """ASAM: SAM with a scale-invariant (element-wise adaptive) neighbourhood."""

    rho: float = Field(0.5, gt=0, le=10)
    eta: float = Field(0.01, ge=0, le=1, description="T = |w| + eta for weights")


class SAM(torch.optim.Optimizer):
    """Wraps a built base optimizer, sharing its param groups and state (saved as the base's)."""

    two_pass = True

    def __init__(
        self, base: torch.optim.Optimizer, rho: float, adaptive: bool = False, eta: float = 0.0
    ) -> None:
        params = [p for g in base.param_groups for p in g["params"]]
        super().__init__(params, {"rho": rho})
        self.base = base
        self.rho = rho
        self.adaptive = adaptive
        self.eta = eta
        self.param_groups = base.param_groups
        self.state = base.state
        self._perturbation: dict[torch.Tensor, torch.Tensor] = {}

    def _scale_operator(self) -> dict[torch.Tensor, torch.Tensor | None]:
        ops: dict[torch.Tensor, torch.Tensor | None] = {}
        for group in self.param_groups:
            names = group.get("names") or [""] * len(group["params"])
            for name, p in zip(names, group["params"], strict=True):
                if p.grad is None:
                    continue
                is_weight = "weight" in name or not name
                ops[p] = p.detach().abs().add(self.eta) if self.adaptive and is_weight else None
        return ops

    @torch.no_grad()
    def first_step(self) -> None:
        """Move to w + ε̂ (from the gradient of the first pass)."""
        ops = self._scale_operator()
        scaled: list[torch.Tensor] = []
        for p, t in ops.items():
            assert p.grad is not None
            scaled.append(p.grad if t is None else t * p.grad)
        if not scaled:
            return
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(scaled)))
        factor = self.rho / (norm + 1e-12)
        self._perturbation = {}
        for (p, t), tg in zip(ops.items(), scaled, strict=True):
            e = (tg if t is None else t * tg) * factor  # ρ T² g / ‖T g‖
            p.add_(e)
            self._perturbation[p] = e

    @torch.no_grad()
    def second_step(self, loss: torch.Tensor | None = None) -> None:
        """Return to w and let the base optimizer step with the perturbed gradient.

        `loss` (the perturbed pass's) goes to bases that need it (Polyak-type step sizes).
        """
        for p, e in self._perturbation.items():
            p.sub_(e)
        self._perturbation = {}
        if getattr(self.base, "needs_loss", False):
            if loss is None:
                raise ValueError(f"{type(self.base).__name__} needs the loss of the second pass")
            self.base.step(loss=loss)  # type: ignore[call-overload]
        else:
            self.base.step()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Standalone use: `closure` re-evaluates the loss and calls backward()."""
        if closure is None:
            raise ValueError("SAM needs a closure that recomputes the loss and calls backward()")
        self.first_step()
        self.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = closure()
        self.second_step(loss.detach() if isinstance(loss, torch.Tensor) else None)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base.load_state_dict(state_dict)
        self.param_groups = self.base.param_groups
        self.state = self.base.state


@OPTIMIZERS.register(
    "sam",
    settings=SamSettings,
    summary="Sharpness-Aware Minimization around any base optimizer (two passes per step)",
    paper="Sharpness-Aware Minimization for Efficiently Improving Generalization "
    "(Foret et al., 2021)",
)
def build_sam(
    s: SamSettings, params: nn.Module | Iterable[Any], adjust_groups: Any = None
) -> torch.optim.Optimizer:
    return SAM(build_optimizer(s.base, params, adjust_groups=adjust_groups), s.rho)


@OPTIMIZERS.register(
    "asam",
    settings=AsamSettings,
    summary="Adaptive SAM: scale-invariant sharpness around any base optimizer",
    paper="ASAM: Adaptive Sharpness-Aware Minimization for Scale-Invariant Learning of Deep "
    "Neural Networks (Kwon et al., 2021)",
)
def build_asam(
    s: AsamSettings, params: nn.Module | Iterable[Any], adjust_groups: Any = None
) -> torch.optim.Optimizer:
    base = build_optimizer(s.base, params, adjust_groups=adjust_groups)
    return SAM(base, s.rho, adaptive=True, eta=s.eta)
