"""`activation_kurtosis`: penalise heavy-tailed (outlier-channel) layer outputs.

"Mitigating the Impact of Outlier Channels for Language Model Quantization with Activation
Regularization" (Nrusimha, Mishra, Wang, Alistarh, Panda, Kim, 2024, arXiv 2404.03605) regularises
a layer's outputs with an activation-kurtosis penalty. Kurtosis of a vector x (population moments):

    Kurt(x) = E[(x − μ)⁴] / (E[(x − μ)²]² + ε)

taken per token (per row) across the channel dimension of each selected layer's output, then
averaged over tokens and over layers. Two penalties (the paper's exact one is unverified):
`kurtosis` λ · mean Kurt, or `target` λ · mean (Kurt − κ_T)² (the KURE form of "Robust
Quantization: One Model to Rule Them All", κ_T = 1.8, a uniform distribution's kurtosis).

Outputs are captured by forward hooks registered in `configure_model`, only in training mode with
autograd on (evaluation passes and averaged copies of the model store nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn
from torch.utils.hooks import RemovableHandle

from trainlib.registries import REGULARIZERS
from trainlib.regularizers.base import (
    PenaltyContext,
    Regularizer,
    RegularizerSettings,
    SetupContext,
)

#: layers whose outputs are regularised; Conv outputs have their channels on dim 1
LINEAR: tuple[type[nn.Module], ...] = (nn.Linear,)
CONV: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


class ActivationKurtosisSettings(RegularizerSettings):
    strength: float = Field(1e-3, ge=0, le=100, description="λ (proposal; not from the paper)")
    form: Literal["kurtosis", "target"] = Field(
        "kurtosis", description="λ·mean Kurt, or λ·mean (Kurt − κ_T)² (KURE form)"
    )
    target: float = Field(1.8, ge=1, le=100, description="κ_T for form target (uniform: 1.8)")
    layers: Literal["hidden", "all"] = Field(
        "hidden", description="hidden: every Linear/Conv but the last (the logits); all"
    )
    eps: float = Field(1e-6, gt=0, le=1, description="ε in the denominator")


def kurtosis(x: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Population kurtosis m₄ / (m₂² + ε) of each row of x (along the last dim)."""
    d = x - x.mean(dim=-1, keepdim=True)
    d2 = d.pow(2)
    m2 = d2.mean(dim=-1)
    m4 = d2.pow(2).mean(dim=-1)
    return m4 / (m2.pow(2) + eps)


class ActivationKurtosis(Regularizer):
    """λ · mean over layers and tokens of Kurt (or of (Kurt − κ_T)²) of the layer outputs."""

    def __init__(self, s: ActivationKurtosisSettings) -> None:
        self.s = s
        self.captured: dict[int, torch.Tensor] = {}
        self.handles: list[RemovableHandle] = []

    def configure_model(self, model: nn.Module) -> None:
        chosen = [m for m in model.modules() if isinstance(m, LINEAR + CONV)]
        if self.s.layers == "hidden":
            chosen = chosen[:-1]
        for key, module in enumerate(chosen):
            channel_dim = 1 if isinstance(module, CONV) else -1
            self.handles.append(module.register_forward_hook(self._hook(key, channel_dim)))

    def _hook(self, key: int, channel_dim: int) -> Callable[[nn.Module, Any, Any], None]:
        # a closure, not a bound method: deep copies of the model (EMA) share it, not this object
        captured = self.captured

        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if module.training and torch.is_grad_enabled() and isinstance(output, torch.Tensor):
                captured[key] = output.movedim(channel_dim, -1) if channel_dim != -1 else output

        return hook

    def penalty(self, ctx: PenaltyContext) -> torch.Tensor | None:
        if not self.captured:
            return None
        per_layer = []
        for out in self.captured.values():
            # at least float32: fourth powers overflow half precision
            rows = out.reshape(-1, out.shape[-1])
            k = kurtosis(rows.to(torch.promote_types(rows.dtype, torch.float32)), self.s.eps)
            per_layer.append(
                k.mean() if self.s.form == "kurtosis" else (k - self.s.target).pow(2).mean()
            )
        # released here; the graph keeps what backward needs
        self.captured.clear()
        return self.s.strength * torch.stack(per_layer).mean()


@REGULARIZERS.register(
    "activation_kurtosis",
    settings=ActivationKurtosisSettings,
    summary="kurtosis penalty on layer outputs (per token across channels) against outliers",
    paper="Mitigating the Impact of Outlier Channels for Language Model Quantization with "
    "Activation Regularization (Nrusimha et al., 2024)",
)
def build_activation_kurtosis(s: ActivationKurtosisSettings, setup: SetupContext) -> Regularizer:
    return ActivationKurtosis(s)
