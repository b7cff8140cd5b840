"""Per-sample normalizations: no batch statistics, the same in training and evaluation."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainlib.components.norms_layout import Layout, per_position
from trainlib.registries import NORMS


class NoneSettings(BaseModel):
    """No normalization (the identity)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LayerNormSettings(BaseModel):
    """LayerNorm over the features (over the channels at each position for images)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    eps: float = Field(1e-5, gt=0, le=1)
    affine: bool = True


class RMSNormSettings(BaseModel):
    """RMSNorm: y = g * x / RMS(x), no re-centring.

    `eps_placement` "inside" is sqrt(mean(x^2) + eps) (torch.nn.RMSNorm, the Pre-RMSNorm paper);
    "outside" is sqrt(mean(x^2)) + eps, the authors' reference code (with eps 1e-8).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    eps: float = Field(1e-6, gt=0, le=1)
    eps_placement: Literal["inside", "outside"] = "inside"
    affine: bool = True


class CRMSNormSettings(BaseModel):
    """CRMSNorm: RMSNorm of the zero-mean (C+1)-vector whose first C coordinates are the input."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    eps: float = Field(1e-5, gt=0, le=1)
    affine: bool = True


class GroupNormSettings(BaseModel):
    """GroupNorm; `groups` is reduced to gcd(groups, C) so every width has a valid grouping."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    groups: int = Field(32, ge=1, le=4096)
    eps: float = Field(1e-5, gt=0, le=1)
    affine: bool = True


class HypersphericalSettings(BaseModel):
    """Project each feature vector onto the unit sphere; optionally a learnable per-feature gain."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    learnable_gain: bool = False
    gain_init: float = Field(1.0, gt=0, le=1e4)


class RMSNorm(nn.Module):
    """y = g * x / sqrt(mean(x^2) + eps) over the last dim (Zhang & Sennrich, arXiv 1910.07467)."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-6,
        affine: bool = True,
        eps_outside_sqrt: bool = False,
    ) -> None:
        super().__init__()
        self.eps = eps
        self.eps_outside_sqrt = eps_outside_sqrt
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean_square = x.pow(2).mean(-1, keepdim=True)
        if self.eps_outside_sqrt:
            y = x / (mean_square.sqrt() + self.eps)
        else:
            y = x * torch.rsqrt(mean_square + self.eps)
        return y * self.weight if self.weight is not None else y


class CRMSNorm(nn.Module):
    """Compressed RMSNorm (Jiang et al., "Pre-RMSNorm and Pre-CRMSNorm Transformers", 2305.14858).

    x in R^(d-1) stands for z = (x, -sum(x)) in R^d, which has zero mean; the norm divides by
    RMS(z) = sqrt((sum x^2 + (sum x)^2) / d + eps) without materialising z.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x.shape[-1] + 1
        square_sum = x.pow(2).sum(-1, keepdim=True) + x.sum(-1, keepdim=True).pow(2)
        y = x * torch.rsqrt(square_sum / d + self.eps)
        return y * self.weight if self.weight is not None else y


class Hyperspherical(nn.Module):
    """l2n(x) = x / max(||x||, 1e-8) over the features (Lee et al., SimbaV2, arXiv 2502.15280)."""

    def __init__(self, num_features: int, learnable_gain: bool, gain_init: float) -> None:
        super().__init__()
        gain = torch.full((num_features,), gain_init)
        self.gain = nn.Parameter(gain) if learnable_gain else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        return y * self.gain if self.gain is not None else y


class FeatureGroupNorm(nn.GroupNorm):
    """GroupNorm on (N, ..., C): groups of the last dim, per position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = super().forward(x.reshape(-1, x.shape[-1]))
        return out.reshape(x.shape)


@NORMS.register("none", settings=NoneSettings, summary="no normalization")
def build_none(s: NoneSettings, num_features: int, layout: Layout) -> nn.Module:
    return nn.Identity()


@NORMS.register(
    "layernorm",
    settings=LayerNormSettings,
    summary="layer normalization over the features",
    paper="Layer Normalization (Ba, Kiros, Hinton, 2016)",
)
def build_layernorm(s: LayerNormSettings, num_features: int, layout: Layout) -> nn.Module:
    norm = nn.LayerNorm(num_features, eps=s.eps, elementwise_affine=s.affine)
    return per_position(norm, layout)


@NORMS.register(
    "rmsnorm",
    settings=RMSNormSettings,
    summary="root-mean-square normalization, no re-centring",
    paper="Root Mean Square Layer Normalization (Zhang & Sennrich, 2019)",
)
def build_rmsnorm(s: RMSNormSettings, num_features: int, layout: Layout) -> nn.Module:
    norm = RMSNorm(num_features, s.eps, s.affine, eps_outside_sqrt=s.eps_placement == "outside")
    return per_position(norm, layout)


@NORMS.register(
    "crmsnorm",
    settings=CRMSNormSettings,
    summary="compressed RMSNorm: the RMS of the implied zero-mean (C+1)-vector",
    paper="Pre-RMSNorm and Pre-CRMSNorm Transformers: Equivalent and Efficient Pre-LN "
    "Transformers (Jiang et al., 2023)",
)
def build_crmsnorm(s: CRMSNormSettings, num_features: int, layout: Layout) -> nn.Module:
    return per_position(CRMSNorm(num_features, s.eps, s.affine), layout)


@NORMS.register(
    "groupnorm",
    settings=GroupNormSettings,
    summary="group normalization (channels in groups, per sample)",
    paper="Group Normalization (Wu & He, 2018)",
)
def build_groupnorm(s: GroupNormSettings, num_features: int, layout: Layout) -> nn.Module:
    groups = math.gcd(s.groups, num_features)
    if layout == "channels":
        return nn.GroupNorm(groups, num_features, eps=s.eps, affine=s.affine)
    return FeatureGroupNorm(groups, num_features, eps=s.eps, affine=s.affine)


@NORMS.register(
    "hyperspherical",
    settings=HypersphericalSettings,
    summary="project each feature vector to unit L2 norm",
    paper="Hyperspherical Normalization for Scalable Deep Reinforcement Learning "
    "(Lee et al., 2025)",
)
def build_hyperspherical(s: HypersphericalSettings, num_features: int, layout: Layout) -> nn.Module:
    return per_position(Hyperspherical(num_features, s.learnable_gain, s.gain_init), layout)
