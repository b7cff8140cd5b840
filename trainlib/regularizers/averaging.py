"""Weight averaging: `ema` (with the batch-size scaling rule of "How to Scale Your EMA")."""

from __future__ import annotations

import copy
from typing import Any

import torch
from pydantic import Field
from torch import nn

from trainlib.registries import REGULARIZERS
from trainlib.regularizers.base import Regularizer, RegularizerSettings, SetupContext


class EmaSettings(RegularizerSettings):
    decay: float = Field(0.999, gt=0, lt=1, description="ρ at the reference batch size")
    reference_batch_size: int | None = Field(
        None, ge=1, description="B₀ for the scaling rule ρ̂ = ρ^(B/B₀); None: no scaling"
    )
    warmup: bool = Field(False, description="ρ_t = min(ρ, (1 + t)/(10 + t))")
    average_buffers: bool = Field(False, description="average BN statistics too (else copy)")


class Ema(Regularizer):
    """θ_ema ← ρ θ_ema + (1 − ρ) θ after every step; evaluated beside the raw model."""

    def __init__(self, s: EmaSettings, batch_size: int) -> None:
        self.s = s
        kappa = batch_size / s.reference_batch_size if s.reference_batch_size else 1.0
        self.decay = s.decay**kappa
        self.model: nn.Module | None = None
        self.updates = 0

    def configure_model(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
        assert self.model is not None
        rho = self.decay
        if self.s.warmup:
            rho = min(rho, (1 + self.updates) / (10 + self.updates))
        ema: list[torch.Tensor] = list(self.model.parameters())
        torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 1 - rho)
        for mine, theirs in zip(self.model.buffers(), model.buffers(), strict=True):
            if self.s.average_buffers and mine.is_floating_point():
                mine.lerp_(theirs, 1 - rho)
            else:
                mine.copy_(theirs)
        self.updates += 1

    def evaluation_model(self) -> nn.Module | None:
        return self.model

    def state_dict(self) -> dict[str, Any]:
        assert self.model is not None
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.model is not None
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


@REGULARIZERS.register(
    "ema",
    settings=EmaSettings,
    summary="exponential moving average of the weights, with the EMA scaling rule",
    paper="How to Scale Your EMA (Busbridge et al., 2023)",
)
def build_ema(s: EmaSettings, setup: SetupContext) -> Regularizer:
    return Ema(s, setup.batch_size)
