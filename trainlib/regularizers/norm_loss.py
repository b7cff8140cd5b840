"""`norm_loss`: pull every weight vector (one per output filter / neuron) to unit norm.

"Norm Loss: An efficient yet effective regularization method for deep neural networks"
(Georgiou, Schmitt, Bäck, Chen, Lew; ICPR 2020, arXiv 2103.06583): a soft constraint toward the
Oblique manifold, offered as an alternative to weight decay.

    R = λ Σ_l (1/C_l) Σ_{i=1..C_l} (1 − ‖w_l,i‖₂)²        (form "norm", reduction "mean")

w_l,i is row i of W_l.view(out, −1). Only the abstract was verified: whether the paper squares the
norm inside, (1 − ‖w‖²)², and whether it averages over filters are both switches here.
"""

from __future__ import annotations

from typing import Literal

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


class NormLossSettings(RegularizerSettings):
    strength: float = Field(1e-2, ge=0, le=100, description="λ (proposal; not from the paper)")
    form: Literal["norm", "squared_norm"] = Field(
        "norm", description="(1 − ‖w‖)² or (1 − ‖w‖²)² per filter"
    )
    reduction: Literal["mean", "sum"] = Field(
        "mean", description="over a layer's filters: mean (1/C_l Σ) or sum"
    )


def norm_loss_term(w: torch.Tensor, form: str = "norm", reduction: str = "mean") -> torch.Tensor:
    """One layer's term before λ; w is any tensor whose first dim indexes output filters."""
    rows = w.reshape(w.shape[0], -1)
    if form == "norm":
        norms: torch.Tensor = torch.linalg.vector_norm(rows, dim=1)
        deviation = 1 - norms
    else:
        deviation = 1 - rows.pow(2).sum(dim=1)
    sq = deviation.pow(2)
    return sq.mean() if reduction == "mean" else sq.sum()


class NormLoss(Regularizer):
    """λ Σ_l reduce_i (1 − ‖w_l,i‖)² over the conv/linear weights (tensors with ≥ 2 dims)."""

    def __init__(self, s: NormLossSettings) -> None:
        self.s = s
        self.weights: list[nn.Parameter] = []

    def configure_model(self, model: nn.Module) -> None:
        self.weights = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]

    def penalty(self, ctx: PenaltyContext) -> torch.Tensor | None:
        if not self.weights:
            return None
        terms = [norm_loss_term(w, self.s.form, self.s.reduction) for w in self.weights]
        return self.s.strength * torch.stack(terms).sum()


@REGULARIZERS.register(
    "norm_loss",
    settings=NormLossSettings,
    summary="Norm Loss: each filter's weight vector toward unit norm (Oblique manifold)",
    paper="Norm Loss: An efficient yet effective regularization method for deep neural "
    "networks (Georgiou, Schmitt, Bäck, Chen, Lew, 2020)",
)
def build_norm_loss(s: NormLossSettings, setup: SetupContext) -> Regularizer:
    return NormLoss(s)
