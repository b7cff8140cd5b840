"""Penalties on the outputs: `z_loss` (log² of the softmax normaliser), `confidence_penalty`
(negative entropy of the softmax).
"""

from __future__ import annotations

import torch
from pydantic import Field

from trainlib.registries import REGULARIZERS
from trainlib.regularizers.base import (
    PenaltyContext,
    Regularizer,
    RegularizerSettings,
    SetupContext,
)


class ZLossSettings(RegularizerSettings):
    strength: float = Field(1e-4, ge=0, le=100, description="α in α·mean((log Z)²)")


class ZLoss(Regularizer):
    """α · mean over the batch of (logsumexp(z))²; keeps the logits' normaliser near 1."""

    def __init__(self, s: ZLossSettings) -> None:
        self.s = s

    def penalty(self, ctx: PenaltyContext) -> torch.Tensor:
        log_z = torch.logsumexp(ctx.logits.float(), dim=-1)
        return self.s.strength * log_z.pow(2).mean()


@REGULARIZERS.register(
    "z_loss",
    settings=ZLossSettings,
    summary="z-loss: α (log Z)² of the softmax normaliser",
    paper="PaLM: Scaling Language Modeling with Pathways (Chowdhery et al., 2022)",
)
def build_z_loss(s: ZLossSettings, setup: SetupContext) -> Regularizer:
    return ZLoss(s)


class ConfidencePenaltySettings(RegularizerSettings):
    strength: float = Field(
        0.1, ge=0, le=100, description="β; tuned per task in the paper (0.1 is a proposal)"
    )
    threshold: float | None = Field(
        None, ge=0, description="Γ: only entropies below Γ are penalised, β·max(0, Γ − H)"
    )


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(softmax(z)) per row, from log-softmax (finite even where p underflows to 0)."""
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


class ConfidencePenalty(Regularizer):
    """−β · mean H(p): rewards high-entropy (less confident) outputs.

    "Regularizing Neural Networks by Penalizing Confident Output Distributions" (Pereyra,
    Tucker, Chorowski, Kaiser, Hinton, 2017). Gradient w.r.t. the logits: β p ⊙ (log p + H).
    With a threshold Γ the hinge form β · mean max(0, Γ − H) penalises only entropies below Γ
    (its sign chosen so that minimising it raises low entropies; for Γ ≥ log C it is the plain
    penalty plus the constant βΓ).
    """

    def __init__(self, s: ConfidencePenaltySettings) -> None:
        self.s = s

    def penalty(self, ctx: PenaltyContext) -> torch.Tensor:
        # at least float32, float64 kept (tests); low-precision logits lose the entropy's tail
        logits = ctx.logits.to(torch.promote_types(ctx.logits.dtype, torch.float32))
        h = entropy(logits)
        if self.s.threshold is None:
            return -self.s.strength * h.mean()
        return self.s.strength * torch.relu(self.s.threshold - h).mean()


@REGULARIZERS.register(
    "confidence_penalty",
    settings=ConfidencePenaltySettings,
    summary="confidence penalty: −β·H(p), the negative entropy of the output distribution",
    paper="Regularizing Neural Networks by Penalizing Confident Output Distributions "
    "(Pereyra, Tucker, Chorowski, Kaiser, Hinton, 2017)",
)
def build_confidence_penalty(s: ConfidencePenaltySettings, setup: SetupContext) -> Regularizer:
    return ConfidencePenalty(s)
