"""BitNet b1.58 quantization-aware training: ternary weights, 8-bit activations, STE.

"The Era of 1-bit LLMs: All Large Language Models are in 1.58 Bits" (Ma et al., 2024) and
"BitNet b1.58 Reloaded: State-of-the-art Performance Also on Smaller Networks" (Nielsen &
Schneider-Kamp, 2024; reference code schneiderkamplab/bitlinear):

    γ = measure(|W|) (mean: absmean; median: absmedian, Reloaded), clamped below at ε = 1e-5
    W_q = clamp(round(W / γ), -1, 1) · γ                       (one scale per weight tensor)
    x_n = LayerNorm(x) without parameters (Reloaded's in-layer normalisation, optional)
    s_x = Q_b / max(absmax(x_n per row), ε),  x_q = clamp(round(x_n · s_x), -Q_b, Q_b - 1) / s_x
    y = x_q W_q^T + b

with Q_b = 2^(bits-1) (128 for 8 bits, as in Reloaded's code). Rounding and clamping are bypassed
in the backward (straight-through estimator, v + (q(v) - v).detach()); scales are computed on
detached tensors. The latent weights stay in full precision and are what the optimizer updates
and the checkpoint holds. The bias is added after rescaling (the clean form, not the reference
code's quirk of scaling the bias too).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainlib.compression.layers import compressible

EPS = 1e-5


class BitNetSettings(BaseModel):
    """Ternary (1.58-bit) weights in every Linear layer but the head."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["bitnet158"] = "bitnet158"
    scale: Literal["absmean", "absmedian"] = Field(
        "absmean",
        description="weight scale: mean |W| (BitNet b1.58) or median |W| (b1.58 Reloaded)",
    )
    activation_bits: int | None = Field(
        8, ge=2, le=16, description="per-token absmax activation quantization; null: off"
    )
    input_norm: bool = Field(True, description="parameter-free LayerNorm before quantizing")
    include_head: bool = Field(False, description="quantize the classifier too")


def weight_scale(weight: torch.Tensor, scale: str) -> torch.Tensor:
    """γ over the whole tensor (torch's median: the lower middle value for an even count)."""
    magnitude = weight.detach().abs()
    gamma = magnitude.mean() if scale == "absmean" else magnitude.median()
    return gamma.clamp_min(EPS)


def ternary(weight: torch.Tensor, scale: str) -> torch.Tensor:
    """clamp(round(W/γ), -1, 1)·γ in the forward, the identity in the backward."""
    gamma = weight_scale(weight, scale)
    quantized = (weight / gamma).round().clamp(-1, 1) * gamma
    return weight + (quantized - weight).detach()


def absmax_quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-row (per-token) absmax quantization to `bits`, dequantized, with the STE."""
    q_b = 2 ** (bits - 1)
    s_x: torch.Tensor = q_b / x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(EPS)
    quantized = (x * s_x).round().clamp(-q_b, q_b - 1) / s_x
    return x + (quantized - x).detach()


class BitLinear(nn.Linear):
    """A Linear layer whose forward uses the ternary weights and quantized activations."""

    scale: str = "absmean"
    activation_bits: int | None = 8
    input_norm: bool = True

    def quantized_weight(self) -> torch.Tensor:
        return ternary(self.weight, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_norm:
            x = F.layer_norm(x, x.shape[-1:], eps=EPS)
        if self.activation_bits is not None:
            x = absmax_quantize(x, self.activation_bits)
        return F.linear(x, self.quantized_weight(), self.bias)


def to_bitlinear(layer: nn.Linear, s: BitNetSettings) -> BitLinear:
    """A BitLinear sharing `layer`'s parameters (same state-dict keys, same optimizer tensors)."""
    new = BitLinear(
        layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta"
    )
    new.weight = layer.weight
    new.bias = layer.bias
    new.train(layer.training)
    new.scale = s.scale
    new.activation_bits = s.activation_bits
    new.input_norm = s.input_norm
    return new


def apply_bitnet(model: nn.Module, s: BitNetSettings) -> list[str]:
    """Swap the Linear layers (not the head unless configured) in place; returns their names."""
    swapped: list[str] = []
    for name, layer in compressible(model, include_head=s.include_head, kinds=(nn.Linear,)):
        if not name or type(layer) is not nn.Linear:  # subclasses may rely on their own forward
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, to_bitlinear(layer, s))
        swapped.append(name)
    return swapped
