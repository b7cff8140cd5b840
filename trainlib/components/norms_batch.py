"""Normalizations with batch statistics: batchnorm, ghost batchnorm, batch-channel norm."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from trainlib.components.norms_layout import Layout, channel_view, to_ncl
from trainlib.registries import NORMS


class BatchNormSettings(BaseModel):
    """BatchNorm: per-channel batch statistics in training, running statistics at evaluation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    momentum: float = Field(0.1, gt=0, le=1)
    eps: float = Field(1e-5, gt=0, le=1)
    affine: bool = True


class GhostBatchNormSettings(BatchNormSettings):
    """Ghost BatchNorm: statistics per virtual batch of `virtual_batch_size` samples.

    The batch is cut into max(1, N // virtual_batch_size) consecutive chunks with torch.chunk,
    as the reference code does; running statistics are updated once per chunk, in order.
    """

    virtual_batch_size: int = Field(128, ge=2, le=1 << 20)


class BatchChannelNormSettings(BaseModel):
    """Batch-Channel Normalization: estimated batch statistics, then GroupNorm.

    `momentum` is the estimate's moving speed r (the paper's value is not confirmed; 0.1 as in
    a public re-implementation); `estimate: false` uses ordinary BatchNorm for the batch stage.
    `groups` is reduced to gcd(groups, C).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    groups: int = Field(32, ge=1, le=4096)
    momentum: float = Field(0.1, ge=0, le=1)
    eps: float = Field(1e-5, gt=0, le=1)
    estimate: bool = True


class FeatureBatchNorm(nn.BatchNorm1d):
    """BatchNorm over (N, ..., C): statistics per channel over every leading position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = super().forward(x.reshape(-1, x.shape[-1]))
        return out.reshape(x.shape)


class GhostBatchNorm(_BatchNorm):
    """BatchNorm with per-virtual-batch statistics (Hoffer, Hubara, Soudry, arXiv 1705.08741)."""

    def __init__(
        self, num_features: int, layout: Layout, virtual_batch_size: int, **kwargs: object
    ) -> None:
        super().__init__(num_features, **kwargs)  # type: ignore[arg-type]
        self.layout: Layout = layout
        self.virtual_batch_size = virtual_batch_size

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        ncl, restore = to_ncl(x, self.layout)
        momentum = 0.1 if self.momentum is None else self.momentum
        args = (self.running_mean, self.running_var, self.weight, self.bias)
        if not self.training:
            return restore(F.batch_norm(ncl, *args, False, 0.0, self.eps))
        chunks = ncl.chunk(max(1, x.shape[0] // self.virtual_batch_size))
        out = [F.batch_norm(c, *args, True, momentum, self.eps) for c in chunks]
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(len(chunks))
        return restore(torch.cat(out))


class BatchChannelNorm(nn.Module):
    """Batch-Channel Normalization (Qiao et al., arXiv 1903.10520; reference: BCNorm / EstBN).

    Batch stage: per-channel normalization by estimated statistics that carry no gradient,
    updated first then used: mu <- (1-r) mu + r mean(x); var <- (1-r) var + r mean((x - mu_old)^2).
    Channel stage: GroupNorm with a per-group affine. Images are grouped over (C/G, H, W) per
    sample, features over C/G per position.
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, num_features: int, layout: Layout, s: BatchChannelNormSettings) -> None:
        super().__init__()
        self.layout: Layout = layout
        self.groups = math.gcd(s.groups, num_features)
        self.momentum = s.momentum
        self.eps = s.eps
        self.estimate = s.estimate
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.group_weight = nn.Parameter(torch.ones(self.groups))
        self.group_bias = nn.Parameter(torch.zeros(self.groups))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _batch_stage(self, x: torch.Tensor) -> torch.Tensor:
        if not self.estimate:
            return F.batch_norm(
                x, self.running_mean, self.running_var, None, None,
                self.training, self.momentum, self.eps,
            )  # fmt: skip
        if self.training:
            with torch.no_grad():
                r = self.momentum
                centred = (x - channel_view(self.running_mean)).pow(2).mean((0, 2))
                self.running_mean.mul_(1 - r).add_(x.mean((0, 2)), alpha=r)
                self.running_var.mul_(1 - r).add_(centred, alpha=r)
        mean, var = channel_view(self.running_mean), channel_view(self.running_var)
        return (x - mean) * torch.rsqrt(var + self.eps)

    def _channel_stage(self, x: torch.Tensor) -> torch.Tensor:
        n, c, length = x.shape
        if self.layout == "channels":
            grouped = x.reshape(n, self.groups, -1)
        else:
            grouped = x.transpose(1, 2).reshape(n * length, self.groups, -1)
        var, mean = torch.var_mean(grouped, dim=-1, keepdim=True, correction=0)
        grouped = (grouped - mean) * torch.rsqrt(var + self.eps)
        grouped = grouped * channel_view(self.group_weight) + channel_view(self.group_bias)
        if self.layout == "channels":
            return grouped.reshape(n, c, length)
        return grouped.reshape(n, length, c).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ncl, restore = to_ncl(x, self.layout)
        y = self._batch_stage(ncl) * channel_view(self.weight) + channel_view(self.bias)
        return restore(self._channel_stage(y))


@NORMS.register(
    "batchnorm",
    settings=BatchNormSettings,
    summary="batch normalization",
    paper="Batch Normalization: Accelerating Deep Network Training by Reducing Internal "
    "Covariate Shift (Ioffe & Szegedy, 2015)",
)
def build_batchnorm(s: BatchNormSettings, num_features: int, layout: Layout) -> nn.Module:
    cls = nn.BatchNorm2d if layout == "channels" else FeatureBatchNorm
    return cls(num_features, eps=s.eps, momentum=s.momentum, affine=s.affine)


@NORMS.register(
    "ghost_batchnorm",
    settings=GhostBatchNormSettings,
    summary="batch norm with statistics per virtual (ghost) batch",
    paper="Train longer, generalize better: closing the generalization gap in large batch "
    "training of neural networks (Hoffer, Hubara, Soudry, 2017)",
)
def build_ghost_batchnorm(
    s: GhostBatchNormSettings, num_features: int, layout: Layout
) -> nn.Module:
    return GhostBatchNorm(
        num_features, layout, s.virtual_batch_size, eps=s.eps, momentum=s.momentum, affine=s.affine
    )


@NORMS.register(
    "batch_channel_norm",
    settings=BatchChannelNormSettings,
    summary="estimated batch statistics, then group normalization",
    paper="Micro-Batch Training with Batch-Channel Normalization and Weight Standardization "
    "(Qiao et al., 2019)",
)
def build_batch_channel_norm(
    s: BatchChannelNormSettings, num_features: int, layout: Layout
) -> nn.Module:
    return BatchChannelNorm(num_features, layout, s)
