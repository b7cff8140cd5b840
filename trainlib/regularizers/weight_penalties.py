"""Penalties on the weights: `l1` and `l2` (coupled, beside the optimizers' decoupled decay)."""

from __future__ import annotations

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


class WeightPenaltySettings(RegularizerSettings):
    strength: float = Field(1e-4, ge=0, le=100, description="λ")
    include_biases: bool = Field(False, description="also penalise biases and norm gains (1-D)")


def penalised(model: nn.Module, include_biases: bool) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad and (include_biases or p.ndim > 1)]


class L2(Regularizer):
    """λ Σ ‖W‖² over the weight matrices (coupled: it passes through the optimizer's moments)."""

    def __init__(self, s: WeightPenaltySettings) -> None:
        self.s = s

    def penalty(self, ctx: PenaltyContext) -> torch.Tensor:
        params = penalised(ctx.model, self.s.include_biases)
        squares = torch._foreach_norm(params)
        return self.s.strength * torch.stack(squares).pow(2).sum()


class L1(Regularizer):
    """λ Σ |W| over the weight matrices (sparsity)."""

    def __init__(self, s: WeightPenaltySettings) -> None:
        self.s = s

    def penalty(self, ctx: PenaltyContext) -> torch.Tensor:
        params = penalised(ctx.model, self.s.include_biases)
        return self.s.strength * torch.stack(torch._foreach_norm(params, 1)).sum()


@REGULARIZERS.register(
    "l2", settings=WeightPenaltySettings, summary="coupled L2 penalty λ‖W‖² on the weights"
)
def build_l2(s: WeightPenaltySettings, setup: SetupContext) -> Regularizer:
    return L2(s)


@REGULARIZERS.register(
    "l1",
    settings=WeightPenaltySettings,
    summary="L1 penalty λ‖W‖₁ on the weights",
    paper="Regression Shrinkage and Selection via the Lasso (Tibshirani, 1996)",
)
def build_l1(s: WeightPenaltySettings, setup: SetupContext) -> Regularizer:
    return L1(s)
