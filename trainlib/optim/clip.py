"""Gradient transforms usable with any optimizer, run as a step pre-hook: AGC, value, norm."""

from __future__ import annotations

from typing import Any

import torch

from trainlib.optim.base import ClipSettings


def unitwise_norm(x: torch.Tensor) -> torch.Tensor:
    """One norm per output unit (dim 0 in torch's layout); vectors and scalars get one norm."""
    dims = None if x.ndim <= 1 else tuple(range(1, x.ndim))
    norm: torch.Tensor = torch.linalg.vector_norm(x, dim=dims, keepdim=x.ndim > 1)
    return norm


@torch.no_grad()
def adaptive_clip_(params: list[torch.Tensor], clip: float, eps: float) -> None:
    """AGC: G_i <- G_i * max_i / ||G_i|| where ||G_i|| >= max_i = clip * max(||W_i||, eps)."""
    for p in params:
        if p.grad is None:
            continue
        max_norm = unitwise_norm(p.detach()).clamp_min(eps) * clip
        grad_norm = unitwise_norm(p.grad)
        scale = max_norm / grad_norm.clamp_min(1e-6)
        p.grad.mul_(torch.where(grad_norm < max_norm, torch.ones_like(scale), scale))


def attach_clip(optimizer: torch.optim.Optimizer, clip: ClipSettings | None) -> None:
    """Clip the gradients every time `optimizer.step()` runs, before its update."""
    if clip is None or (clip.norm is None and clip.value is None and clip.agc is None):
        return

    def hook(opt: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
        all_params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        if clip.agc is not None:
            for group in opt.param_groups:
                if not group.get("final_layer", False):
                    adaptive_clip_(group["params"], clip.agc, clip.agc_eps)
        if clip.value is not None:
            torch.nn.utils.clip_grad_value_(all_params, clip.value, foreach=True)
        if clip.norm is not None:
            torch.nn.utils.clip_grad_norm_(all_params, clip.norm, foreach=True)

    optimizer.register_step_pre_hook(hook)
