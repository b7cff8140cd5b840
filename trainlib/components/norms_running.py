"""Normalizations driven by running statistics with their own backward: power, online, unified.

Each forward in training mode advances the layer's counters and buffers; the custom backward
updates the gradient-side statistics the papers define, once per backward pass.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainlib.components.norms_layout import Layout, channel_view, to_ncl
from trainlib.registries import NORMS


class PowerNormSettings(BaseModel):
    """PowerNorm defaults from the reference module (sIncerass/powernorm, mask_powernorm.py).

    `group_num` 0 turns off the GroupScaling pre-scaling (each position divided by the RMS of
    each group of channels).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    eps: float = Field(1e-5, gt=0, le=1)
    alpha_fwd: float = Field(0.9, ge=0, lt=1)
    alpha_bkw: float = Field(0.9, ge=0, lt=1)
    warmup_iters: int = Field(10000, ge=0)
    group_num: int = Field(1, ge=0, le=4096)


class OnlineNormSettings(BaseModel):
    """Online Normalization defaults from the reference code (Cerebras/online-normalization).

    ecm "ls" divides each sample by its RMS over all its positions, so in a causal model it lets
    a token see later ones; "ac" (clamping) is per element.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    alpha_fwd: float = Field(0.999, ge=0, lt=1)
    alpha_bkw: float = Field(0.99, ge=0, lt=1)
    eps: float = Field(1e-5, gt=0, le=1)
    ecm: Literal["ac", "ls", "none"] = "ac"
    clamp: float = Field(5.0, gt=0)


class UnifiedNormSettings(BaseModel):
    """Unified Normalization defaults from the reference code (hikvision-research).

    `outlier_filtration` is off in the NLP setting and on in the vision one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: int = Field(4, ge=1, le=1024)
    warmup_iters: int = Field(4000, ge=0)
    eps: float = Field(1e-5, gt=0, le=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    outlier_filtration: bool = False


def _rsqrt(var: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.rsqrt(channel_view(var) + eps)


class _PowerNormFn(torch.autograd.Function):
    """z = x / sqrt(var_fwd + eps); backward with the reference's approximate correction."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, var_fwd: torch.Tensor, var_batch: torch.Tensor,
        norm: PowerNorm,
    ) -> torch.Tensor:  # fmt: skip
        z = x * _rsqrt(var_fwd, norm.eps)
        ctx.save_for_backward(z, var_batch)
        ctx.norm = norm
        return z

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        z, var_batch = ctx.saved_tensors
        norm: PowerNorm = ctx.norm
        g_hat = grad - (1 - norm.alpha_bkw) * channel_view(norm.ema_gz) * z
        norm.ema_gz.add_((g_hat * z).mean((0, 2)))
        # The reference divides by the batch quadratic mean here even after warmup.
        return g_hat * _rsqrt(var_batch, norm.eps), None, None, None


class PowerNorm(nn.Module):
    """PowerNorm (Shen et al., arXiv 2003.07845): no centring, running quadratic mean psi.

    Training step t (from 1): divide by the batch quadratic mean while t <= warmup_iters, by
    psi (before this step's update) afterwards; then psi <- alpha psi + (1 - alpha) mean(x^2),
    preceded during warmup by the cumulative mean psi <- psi (t-1)/t + mean(x^2)/t.
    Evaluation divides by psi.
    """

    running_phi: torch.Tensor
    ema_gz: torch.Tensor
    iters: torch.Tensor

    def __init__(self, num_features: int, layout: Layout, s: PowerNormSettings) -> None:
        super().__init__()
        self.layout: Layout = layout
        self.eps = s.eps
        self.alpha_fwd = s.alpha_fwd
        self.alpha_bkw = s.alpha_bkw
        self.warmup_iters = s.warmup_iters
        self.group_num = s.group_num
        if s.group_num and num_features % s.group_num:
            raise ValueError(f"power_norm: {num_features} channels not divisible by group_num")
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_phi", torch.ones(num_features))
        self.register_buffer("ema_gz", torch.zeros(num_features))
        self.register_buffer("iters", torch.zeros((), dtype=torch.long))

    def _group_scale(self, x: torch.Tensor) -> torch.Tensor:
        if not self.group_num:
            return x
        n, c, length = x.shape
        grouped = x.reshape(n, self.group_num, -1, length)
        scaled = grouped * torch.rsqrt(grouped.pow(2).mean(2, keepdim=True) + self.eps)
        return scaled.reshape(n, c, length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ncl, restore = to_ncl(x, self.layout)
        ncl = self._group_scale(ncl)
        if not self.training:
            z = ncl * _rsqrt(self.running_phi, self.eps)
        else:
            self.iters.add_(1)
            t = int(self.iters)
            var_batch = ncl.detach().pow(2).mean((0, 2))
            var_fwd = var_batch if t <= self.warmup_iters else self.running_phi.clone()
            z = _PowerNormFn.apply(ncl, var_fwd, var_batch, self)
            with torch.no_grad():
                if t < self.warmup_iters:
                    self.running_phi.mul_((t - 1) / t).add_(var_batch / t)
                a = self.alpha_fwd
                self.running_phi.mul_(a).add_((1 - a) * var_batch)
        return restore(z * channel_view(self.weight) + channel_view(self.bias))


class _OnlineNormFn(torch.autograd.Function):
    """Samples in batch order, each normalised by the statistics of the samples before it."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, norm: OnlineNorm) -> torch.Tensor:
        a, eps = norm.alpha_fwd, norm.eps
        outputs, scales = [], []
        for sample in x:  # (C, L)
            scale = torch.rsqrt(norm.running_var + eps)
            outputs.append((sample - norm.running_mean[:, None]) * scale[:, None])
            scales.append(scale)
            var, mean = torch.var_mean(sample, dim=1, correction=0)
            delta = mean - norm.running_mean
            norm.running_var.mul_(a).add_((1 - a) * var + a * (1 - a) * delta.pow(2))
            norm.running_mean.add_((1 - a) * delta)
        y = torch.stack(outputs)
        ctx.save_for_backward(y, torch.stack(scales))
        ctx.norm = norm
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        y, scales = ctx.saved_tensors
        norm: OnlineNorm = ctx.norm
        leak = 1 - norm.alpha_bkw
        grads = []
        for dy, yt, scale in zip(grad, y, scales, strict=True):
            zt = dy - leak * norm.ctrl_v[:, None] * yt
            norm.ctrl_v.add_((zt * yt).mean(1))
            dx = zt * scale[:, None] - leak * norm.ctrl_u[:, None]
            norm.ctrl_u.add_(dx.mean(1))
            grads.append(dx)
        return torch.stack(grads), None


class OnlineNorm(nn.Module):
    """Online Normalization (Chiley et al., arXiv 1905.05894; reference Cerebras code).

    Forward: y_t = (x_t - mu_{t-1}) / sqrt(var_{t-1} + eps), with mu, var the exponential
    mixture statistics of the samples seen so far (spatial / token mean and variance per
    sample). Backward: the "control process" with accumulators u, v removes the gradient
    components along 1 and y. Then the affine step and the error-compensation mechanism
    (ecm): "ac" clamps activations to [-clamp, clamp], "ls" divides each sample by its RMS.
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor
    ctrl_u: torch.Tensor
    ctrl_v: torch.Tensor

    def __init__(self, num_features: int, layout: Layout, s: OnlineNormSettings) -> None:
        super().__init__()
        self.layout: Layout = layout
        self.alpha_fwd = s.alpha_fwd
        self.alpha_bkw = s.alpha_bkw
        self.eps = s.eps
        self.ecm = s.ecm
        self.clamp = s.clamp
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("ctrl_u", torch.zeros(num_features))
        self.register_buffer("ctrl_v", torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ncl, restore = to_ncl(x, self.layout)
        if self.training:
            y = _OnlineNormFn.apply(ncl, self)
        else:
            y = (ncl - channel_view(self.running_mean)) * _rsqrt(self.running_var, self.eps)
        y = y * channel_view(self.weight) + channel_view(self.bias)
        if self.ecm == "ac":
            y = y.clamp(-self.clamp, self.clamp)
        elif self.ecm == "ls":
            y = y * torch.rsqrt(y.pow(2).mean((1, 2), keepdim=True) + 1e-5)
        return restore(y)


class _UnifiedNormFn(torch.autograd.Function):
    """y = w * x / sqrt(var + eps) + b with UN's smoothed gradient statistics in the backward."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
        var: torch.Tensor, ratio: torch.Tensor, skip: bool, norm: UnifiedNorm,
    ) -> torch.Tensor:  # fmt: skip
        inv = _rsqrt(var, norm.eps)
        z = x * inv
        ctx.save_for_backward(z, weight, inv, ratio)
        ctx.skip, ctx.norm = skip, norm
        return z * channel_view(weight) + channel_view(bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        z, weight, inv, ratio = ctx.saved_tensors
        norm: UnifiedNorm = ctx.norm
        t, skip = int(norm.iters), ctx.skip
        g = grad * channel_view(weight * ratio)
        gz = (g * z).mean((0, 2))
        norm.buffer_gz[t % norm.window] = norm.ema_gz if skip else gz
        smooth = t > norm.window and t >= norm.warmup_iters and not skip
        mean_gz = norm.buffer_gz.mean(0) if smooth else gz
        norm.ema_gz.mul_(norm.momentum).add_((1 - norm.momentum) * mean_gz)
        correction = mean_gz if skip else norm.ema_gz
        grad_x = (g - channel_view(correction) * z) * inv
        grad_w = (grad * channel_view(ratio) * z).sum((0, 2))
        return grad_x, grad_w, grad.sum((0, 2)), None, None, None, None


class UnifiedNorm(nn.Module):
    """Unified Normalization (Yang et al., arXiv 2208.01313; reference hikvision-research code).

    No centring. Training step t (from 1) divides by the batch quadratic mean while t <= window
    or t < warmup_iters, afterwards by the geometric mean of the last `window` batch statistics
    (fluctuation smoothing); optional outlier filtration drops a batch whose window's arithmetic
    minus geometric mean exceeds window * var(sqrt(window)). The gradient is scaled by the
    compensation ratio sqrt(var + eps) / sqrt(running_var + eps) (1 until max(1000, warmup),
    then clamped to [1/5, 5]). Evaluation divides by running_var: a per-channel affine map.
    """

    running_var: torch.Tensor
    ema_gz: torch.Tensor
    iters: torch.Tensor
    buffer_x2: torch.Tensor
    buffer_gz: torch.Tensor
    skip_counter: torch.Tensor

    def __init__(self, num_features: int, layout: Layout, s: UnifiedNormSettings) -> None:
        super().__init__()
        self.layout: Layout = layout
        self.window = s.window
        self.warmup_iters = s.warmup_iters
        self.eps = s.eps
        self.momentum = s.momentum
        self.outlier_filtration = s.outlier_filtration
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("ema_gz", torch.zeros(num_features))
        self.register_buffer("iters", torch.zeros((), dtype=torch.long))
        self.register_buffer("buffer_x2", torch.ones(s.window, num_features))
        self.register_buffer("buffer_gz", torch.zeros(s.window, num_features))
        self.register_buffer("skip_counter", torch.zeros((), dtype=torch.long))

    def _statistics(self, x2: torch.Tensor, t: int) -> tuple[torch.Tensor, bool]:
        """The variance this step divides by, and whether the batch was filtered as an outlier."""
        slot = t % self.window
        spread = self.buffer_x2.sqrt().var() if self.outlier_filtration else None
        self.buffer_x2[slot] = x2
        geometric = self.buffer_x2.log().mean(0).exp()
        skip = False
        if spread is not None and t >= self.warmup_iters:
            arithmetic = self.buffer_x2.mean(0)
            if bool((arithmetic - geometric > spread * self.window).any()):
                self.buffer_x2[slot] = self.running_var
                self.skip_counter.add_(1)
                skip = True
        if t <= self.window or t < self.warmup_iters or skip:
            return x2, skip
        return geometric, skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ncl, restore = to_ncl(x, self.layout)
        if not self.training:
            z = ncl * _rsqrt(self.running_var, self.eps)
            return restore(z * channel_view(self.weight) + channel_view(self.bias))
        self.iters.add_(1)
        t = int(self.iters)
        with torch.no_grad():
            var, skip = self._statistics(ncl.pow(2).mean((0, 2)), t)
            ratio = torch.sqrt(var + self.eps) / torch.sqrt(self.running_var + self.eps)
            if t <= max(1000, self.warmup_iters) or skip:
                ratio = torch.ones_like(ratio)
            else:
                ratio = ratio.clamp(0.2, 5.0)
        y = _UnifiedNormFn.apply(ncl, self.weight, self.bias, var, ratio, skip, self)
        with torch.no_grad():
            self.running_var.mul_(self.momentum).add_((1 - self.momentum) * var)
        return restore(y)


@NORMS.register(
    "power_norm",
    settings=PowerNormSettings,
    summary="no centring; running quadratic mean; approximate backward",
    paper="PowerNorm: Rethinking Batch Normalization in Transformers (Shen et al., 2020)",
)
def build_power_norm(s: PowerNormSettings, num_features: int, layout: Layout) -> nn.Module:
    return PowerNorm(num_features, layout, s)


@NORMS.register(
    "online_norm",
    settings=OnlineNormSettings,
    summary="per-sample online statistics with a control-process backward",
    paper="Online Normalization for Training Neural Networks (Chiley et al., 2019)",
)
def build_online_norm(s: OnlineNormSettings, num_features: int, layout: Layout) -> nn.Module:
    return OnlineNorm(num_features, layout, s)


@NORMS.register(
    "unified_norm",
    settings=UnifiedNormSettings,
    summary="fusable LN replacement: smoothed running statistics, outlier filtration",
    paper="Unified Normalization for Accelerating and Stabilizing Transformers (Yang et al., 2022)",
)
def build_unified_norm(s: UnifiedNormSettings, num_features: int, layout: Layout) -> nn.Module:
    return UnifiedNorm(num_features, layout, s)
