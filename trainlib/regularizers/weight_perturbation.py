"""Step strategies that perturb the weights before the update: `awp` and `rwp`.

Both own the step: a clean pass at w (its loss and logits are the step's, and it alone updates
batch-norm statistics), an ascent that finds a weight perturbation γ·v, a second pass at w + γ·v
whose gradient the optimizer applies, then w ← w − γ·v (the same v taken off the updated weights,
as the authors' code does). Only weight matrices are perturbed: parameters of two or more
dimensions whose name contains "weight" (biases and norm gains are left alone).

The authors take the ascent step on a proxy copy with SGD at lr 0.01; the change that step makes is
lr·∇ℓ, and the per-layer (AWP) or global (RWP) rescaling cancels the lr, so the gradient is rescaled
here directly (0.01 is kept where it meets the 1e-20 guard, so zero gradients behave the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from trainlib.registries import REGULARIZERS
from trainlib.regularizers.base import (
    LossFn,
    Regularizer,
    RegularizerSettings,
    SetupContext,
)
from trainlib.step import batchnorm_stats_frozen
from trainlib.step import train_step as plain_step

PROXY_LR = 0.01  # the authors' proxy optimizer: SGD, lr 0.01, no momentum, no decay
EPS = 1e-20  # the authors' guard in ‖w‖ / (‖d‖ + EPS)


class AwpSettings(RegularizerSettings):
    """AWP: one ascent step, rescaled per layer so that ‖γ v_l‖ = γ ‖w_l‖."""

    step_strategy: ClassVar[bool] = True

    gamma: float = Field(
        0.01, ge=0, le=1, description="γ: perturbation size relative to each layer's weight norm"
    )
    warmup_epochs: int = Field(
        0, ge=0, le=100_000, description="plain steps for this many epochs before perturbing"
    )


class RwpSettings(RegularizerSettings):
    """RWP: multi-step ascent on the examples below the loss-stationary threshold c_min."""

    step_strategy: ClassVar[bool] = True

    gamma: float = Field(
        0.01, ge=0, le=1, description="γ: perturbation size relative to the global weight norm"
    )
    inner_steps: int = Field(10, ge=1, le=100, description="ascent steps per training step")
    c_min: float = Field(
        1.7, gt=0, le=1e4, description="only examples with CE_i < c_min drive the ascent"
    )
    warmup_epochs: int = Field(
        0, ge=0, le=100_000, description="plain steps for this many epochs before perturbing"
    )


def perturbed_weights(model: nn.Module) -> list[torch.Tensor]:
    """The tensors AWP and RWP perturb: ≥ 2-D parameters named "...weight..." (code's rule)."""
    return [
        p
        for name, p in model.named_parameters()
        if p.requires_grad and p.ndim >= 2 and "weight" in name
    ]


def _grads(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def per_sample_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CE_i for class indices or soft targets (rows summing to 1); each position of a sequence
    task (logits (B, T, C), labels (B, T)) counts as a sample."""
    if logits.ndim == 3:
        logits, targets = logits.flatten(0, 1), targets.flatten()
    if targets.is_floating_point():
        return -(targets * F.log_softmax(logits, dim=-1)).sum(-1)
    return F.cross_entropy(logits, targets, reduction="none")


def awp_direction(
    weights: list[torch.Tensor], grads: list[torch.Tensor], gamma: float
) -> list[torch.Tensor]:
    """γ·v with v_l = ‖w_l‖ / (‖d_l‖ + 1e-20) · d_l, d_l = 0.01·∇_l ℓ (per layer)."""
    steps = [PROXY_LR * g for g in grads]
    w_norms = torch._foreach_norm(weights)
    d_norms = torch._foreach_norm(steps)
    return [
        d * (gamma * wn / (dn + EPS)) for d, wn, dn in zip(steps, w_norms, d_norms, strict=True)
    ]


def rwp_scale(weights_norm: torch.Tensor, delta: Sequence[torch.Tensor]) -> torch.Tensor:
    """‖w_all‖ / (‖δ_all‖ + 1e-20): one factor for every layer (norms over the concatenation)."""
    delta_norm = torch.stack(torch._foreach_norm(list(delta))).norm()
    scale: torch.Tensor = weights_norm / (delta_norm + EPS)
    return scale


class _WeightPerturbation(Regularizer):
    """Shared bookkeeping: warm-up counter (the only state) and the update at w + γ v."""

    def __init__(self, gamma: float, warmup_steps: int) -> None:
        self.gamma = gamma
        self.warmup_steps = warmup_steps
        self.steps = 0

    def train_step(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        x: torch.Tensor,
        y: torch.Tensor,
        compute_loss: LossFn,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if getattr(optimizer, "two_pass", False):
            raise ValueError(f"{self.name} and a two-pass optimizer (SAM) cannot share a step")
        self.steps += 1
        weights = perturbed_weights(model)
        # γ = 0 is plain training in the authors' code (they set the warm-up to infinity)
        if self.steps <= self.warmup_steps or self.gamma == 0 or not weights:
            return plain_step(model, optimizer, x, y, compute_loss)
        return self._perturbed_step(model, optimizer, x, y, compute_loss, weights)

    def _perturbed_step(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        x: torch.Tensor,
        y: torch.Tensor,
        compute_loss: LossFn,
        weights: list[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The clean pass (its loss and logits are the step's), then the update at w + γ v."""
        logits = model(x)
        loss = compute_loss(logits, y)
        shift = self._shift(model, x, y, logits, loss, weights)
        self._update_at(model, optimizer, x, y, compute_loss, weights, shift)
        return loss.detach(), logits.detach()

    def _shift(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        logits: torch.Tensor,
        loss: torch.Tensor,
        weights: list[torch.Tensor],
    ) -> list[torch.Tensor]:
        """γ·v from the clean pass; the weights must be back at w on return."""
        raise NotImplementedError

    @staticmethod
    def _update_at(
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        x: torch.Tensor,
        y: torch.Tensor,
        compute_loss: LossFn,
        weights: list[torch.Tensor],
        shift: list[torch.Tensor],
    ) -> None:
        """Gradient at w + shift, the optimizer's step, then the shift taken off again."""
        with torch.no_grad():
            torch._foreach_add_(weights, shift)
        optimizer.zero_grad(set_to_none=True)
        with batchnorm_stats_frozen(model):
            loss = compute_loss(model(x), y)
            loss.backward()
        if getattr(optimizer, "needs_loss", False):
            # Polyak-type steps want the loss where the gradient was taken: the perturbed one
            optimizer.step(loss=loss.detach())  # type: ignore[call-overload]
        else:
            optimizer.step()
        with torch.no_grad():
            torch._foreach_sub_(weights, shift)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])


class Awp(_WeightPerturbation):
    """Adversarial Weight Perturbation (Wu, Xia & Wang, 2020), non-adversarial form (x_adv = x).

    g = ∇ℓ(w) from the clean pass (the training objective the loop gives: base loss + penalties;
    the authors ascend their training loss, the same thing without penalties);
    v_l = ‖w_l‖ / (‖d_l‖ + 1e-20) · d_l with d_l = 0.01·g_l; update with ∇ℓ(w + γ v); w ← w − γ v.
    Two forward/backward passes per step, as in the authors' code (proxy pass + perturbed pass).
    """

    def _shift(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        logits: torch.Tensor,
        loss: torch.Tensor,
        weights: list[torch.Tensor],
    ) -> list[torch.Tensor]:
        with torch.no_grad():
            return awp_direction(weights, _grads(loss, weights), self.gamma)


class Rwp(_WeightPerturbation):
    """Robust Weight Perturbation (Yu et al., 2022), non-adversarial form (x_adv = x).

    δ ← 0; for s in 1..S: at w + γ·δ̂, ℓ_s = mean_i 1[CE_i < c_min]·CE_i (over the whole batch),
    δ ← δ + 0.01·∇ℓ_s, δ̂ = ‖w_all‖ / (‖δ_all‖ + 1e-20) · δ (one global factor). Then the update
    with ∇ℓ(w + γ δ̂) and w ← w − γ δ̂. The first ascent point is w itself, so the clean pass is
    ascent step 1: S + 1 forward/backward passes per step, as in the authors' code. The ascent
    uses plain per-example cross-entropy (soft targets allowed), as the authors do. No randomness.
    """

    def __init__(self, s: RwpSettings, warmup_steps: int) -> None:
        super().__init__(s.gamma, warmup_steps)
        self.inner_steps = s.inner_steps
        self.c_min = s.c_min

    def _scaled(self, delta: list[torch.Tensor], w_norm: torch.Tensor) -> list[torch.Tensor]:
        """γ δ̂ = γ ‖w_all‖ / (‖δ_all‖ + 1e-20) · δ."""
        return list(torch._foreach_mul(delta, rwp_scale(w_norm, delta) * self.gamma))

    def _ascent_grads(
        self, logits: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        ce = per_sample_ce(logits, y)
        below = (ce.detach() < self.c_min).to(ce.dtype)  # the loss-stationary condition
        return _grads((ce * below).mean(), weights)

    def _shift(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        logits: torch.Tensor,
        loss: torch.Tensor,
        weights: list[torch.Tensor],
    ) -> list[torch.Tensor]:
        with torch.no_grad():
            origin = [w.detach().clone() for w in weights]  # exact w for every ascent point
            w_norm = torch.stack(torch._foreach_norm(origin)).norm()
        grads = self._ascent_grads(logits, y, weights)
        with torch.no_grad():
            delta = list(torch._foreach_mul(grads, PROXY_LR))
            shift = self._scaled(delta, w_norm)
        with batchnorm_stats_frozen(model):
            for _ in range(self.inner_steps - 1):
                with torch.no_grad():
                    for w, w0, sh in zip(weights, origin, shift, strict=True):
                        torch.add(w0, sh, out=w)
                grads = self._ascent_grads(model(x), y, weights)
                with torch.no_grad():
                    torch._foreach_add_(delta, torch._foreach_mul(grads, PROXY_LR))
                    shift = self._scaled(delta, w_norm)
            with torch.no_grad():
                for w, w0 in zip(weights, origin, strict=True):
                    w.copy_(w0)
        return shift


def _warmup_steps(epochs: int, setup: SetupContext) -> int:
    return epochs * setup.steps_per_epoch


@REGULARIZERS.register(
    "awp",
    settings=AwpSettings,
    summary="adversarial weight perturbation: update from w + γ·(per-layer ascent direction)",
    paper="Adversarial Weight Perturbation Helps Robust Generalization (Wu, Xia & Wang, 2020)",
)
def build_awp(s: AwpSettings, setup: SetupContext) -> Regularizer:
    return Awp(s.gamma, _warmup_steps(s.warmup_epochs, setup))


@REGULARIZERS.register(
    "rwp",
    settings=RwpSettings,
    summary="robust weight perturbation: multi-step ascent limited to low-loss examples",
    paper="Robust Weight Perturbation for Adversarial Training (Yu et al., 2022)",
)
def build_rwp(s: RwpSettings, setup: SetupContext) -> Regularizer:
    return Rwp(s, _warmup_steps(s.warmup_epochs, setup))
