"""Losses. Each takes logits and either class indices or soft targets (rows summing to 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainlib.registries import LOSSES


class CrossEntropySettings(BaseModel):
    """Cross-entropy; label smoothing mixes the target with the uniform distribution."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label_smoothing: float = Field(0.0, ge=0, lt=1)


class CrossEntropy(nn.Module):
    def __init__(self, label_smoothing: float) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)


@LOSSES.register(
    "cross_entropy",
    settings=CrossEntropySettings,
    summary="cross-entropy with optional label smoothing",
    paper="Rethinking the Inception Architecture for Computer Vision (Szegedy et al., 2016)",
)
def build_cross_entropy(s: CrossEntropySettings) -> nn.Module:
    return CrossEntropy(s.label_smoothing)
