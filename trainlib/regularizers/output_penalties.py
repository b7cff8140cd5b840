"""Penalties on the outputs: `z_loss` (log² of the softmax normaliser)."""

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
