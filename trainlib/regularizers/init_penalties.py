"""Penalties toward the initial weights: `l2_init` and `wasserstein_init`.

Both keep a frozen copy of θ₀ taken in `configure_model` (after the init, before the first step)
and checkpoint it: θ₀ cannot be regenerated unless the init's random stream is replayed exactly.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from trainlib.registries import REGULARIZERS
from trainlib.regularizers.base import (
    PenaltyContext,
    Regularizer,
    RegularizerSettings,
    SetupContext,
)


class L2InitSettings(RegularizerSettings):
    strength: float = Field(
        1e-4, ge=0, le=100, description="λ; tuned per problem in the paper (log grid)"
    )
    include_biases: bool = Field(
        True, description="also 1-D tensors (biases, norm gains): the paper uses all of θ"
    )


class WassersteinInitSettings(L2InitSettings):
    reduction: Literal["sum", "mean"] = Field(
        "sum", description="over the sorted entries of a tensor: sum (≤ L2-Init) or mean (= W₂²)"
    )


def l2_init_value(params: list[torch.Tensor], theta0: list[torch.Tensor]) -> torch.Tensor:
    """Σ ‖θ − θ₀‖² over the tensors (no factor 1/2)."""
    return torch.stack([(p - p0).pow(2).sum() for p, p0 in zip(params, theta0, strict=True)]).sum()


def wasserstein_value(
    params: list[torch.Tensor], sorted0: list[torch.Tensor], reduction: str = "sum"
) -> torch.Tensor:
    """Σ_l Σ_i (θ_l,(i) − θ⁰_l,(i))²: values matched by rank, one distribution per tensor.

    `torch.sort` routes each gradient 2(θ_(i) − θ⁰_(i)) back to θ_(i)'s own position.
    """
    terms = []
    for p, s0 in zip(params, sorted0, strict=True):
        sq = (torch.sort(p.reshape(-1)).values - s0).pow(2)
        terms.append(sq.mean() if reduction == "mean" else sq.sum())
    return torch.stack(terms).sum()


class _InitAnchor(Regularizer):
    """Shared part: which tensors are penalised and their (transformed) θ₀ copies."""

    def __init__(self, s: L2InitSettings) -> None:
        self.s = s
        self.names: list[str] = []
        self.params: list[nn.Parameter] = []
        self.anchors: list[torch.Tensor] = []

    def _anchor(self, p: torch.Tensor) -> torch.Tensor:
        return p.detach().clone()

    def configure_model(self, model: nn.Module) -> None:
        for name, p in model.named_parameters():
            if p.requires_grad and (self.s.include_biases or p.ndim > 1):
                self.names.append(name)
                self.params.append(p)
                self.anchors.append(self._anchor(p))

    def state_dict(self) -> dict[str, Any]:
        return {"theta0": dict(zip(self.names, self.anchors, strict=True))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved: dict[str, torch.Tensor] = state["theta0"]
        if sorted(saved) != sorted(self.names):
            raise ValueError(f"{self.name}: θ₀ holds {sorted(saved)}, the model {self.names}")
        for anchor, name in zip(self.anchors, self.names, strict=True):
            if saved[name].shape != anchor.shape:
                raise ValueError(f"{self.name}: θ₀[{name}] has shape {tuple(saved[name].shape)}")
            anchor.copy_(saved[name])


class L2Init(_InitAnchor):
    """λ ‖θ − θ₀‖²₂ — "Maintaining Plasticity in Continual Learning via Regenerative
    Regularization" (Kumar, Marklund, Van Roy, 2023), §3. Gradient 2λ(θ − θ₀)."""

    def penalty(self, ctx: PenaltyContext) -> torch.Tensor:
        return self.s.strength * l2_init_value(list(self.params), self.anchors)


class WassersteinInit(_InitAnchor):
    """λ Σ_l Σ_i (θ_l,(i) − θ⁰_l,(i))², order statistics per tensor (= n_l · W₂² per tensor).

    "Directions of Curvature as an Explanation for Loss of Plasticity" / "Learning Continually
    by Spectral Regularization" v1 (Lewandowski et al.). θ₀ is stored sorted (sorted once).
    """

    def __init__(self, s: WassersteinInitSettings) -> None:
        super().__init__(s)
        self.reduction = s.reduction

    def _anchor(self, p: torch.Tensor) -> torch.Tensor:
        return torch.sort(p.detach().reshape(-1)).values.clone()

    def penalty(self, ctx: PenaltyContext) -> torch.Tensor:
        value = wasserstein_value(list(self.params), self.anchors, self.reduction)
        return self.s.strength * value


@REGULARIZERS.register(
    "l2_init",
    settings=L2InitSettings,
    summary="L2 toward the initial weights, λ‖θ − θ₀‖² (regenerative regularization)",
    paper="Maintaining Plasticity in Continual Learning via Regenerative Regularization "
    "(Kumar, Marklund, Van Roy, 2023)",
)
def build_l2_init(s: L2InitSettings, setup: SetupContext) -> Regularizer:
    return L2Init(s)


@REGULARIZERS.register(
    "wasserstein_init",
    settings=WassersteinInitSettings,
    summary="rank-matched L2 toward the initial weight distribution of each tensor (W₂²)",
    paper="Directions of Curvature as an Explanation for Loss of Plasticity "
    "(Lewandowski, Tanaka, Schuurmans, Machado, 2023)",
)
def build_wasserstein_init(s: WassersteinInitSettings, setup: SetupContext) -> Regularizer:
    return WassersteinInit(s)
