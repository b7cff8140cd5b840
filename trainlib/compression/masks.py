"""Pruning masks and the gradual sparsity schedule.

Cubic schedule (Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of pruning for
model compression", 2017; TF Model Optimization's PolynomialDecay):
    s_t = s_f + (s_i - s_f) · (1 - (t - t_0) / (t_end - t_0))^3   for t_0 ≤ t ≤ t_end,
s_i before t_0 (no pruning yet) and s_f after t_end.
N:M masks ("Learning N:M Fine-grained Structured Sparse Neural Networks From Scratch", Zhou et
al., 2021; code aojunzz/NM-sparsity): groups of M consecutive weights along the input dimension
(Conv weights permuted to (out, kh, kw, in) first), keeping the N largest |w| in each.
"""

from __future__ import annotations

import torch


def cubic_sparsity(t: int, initial: float, final: float, start: int, end: int) -> float:
    """Zhu & Gupta's s_t (clamped to [start, end])."""
    if t <= start:
        return initial
    if t >= end:
        return final
    progress = (t - start) / (end - start)
    return final + (initial - final) * (1.0 - progress) ** 3


@torch.no_grad()
def magnitude_mask(weight: torch.Tensor, sparsity: float, keep: torch.Tensor) -> torch.Tensor:
    """Zero the round(sparsity·numel) smallest |w|; already-pruned entries go first, so masks
    only ever shrink. Ties are broken by position (a stable sort), so the count is exact."""
    n_pruned = round(sparsity * weight.numel())
    score = weight.detach().abs().flatten().float()
    score = torch.where(keep.flatten(), score, torch.full_like(score, -1.0))
    order = torch.argsort(score, stable=True)
    mask = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)
    mask[order[:n_pruned]] = False
    return mask.view_as(weight)


def _groups_last(weight: torch.Tensor) -> torch.Tensor:
    """The weight with its input dimension last: (out, in) as is, (out, in, *k) → (out, *k, in)."""
    return weight if weight.ndim == 2 else weight.movedim(1, -1)


def nm_fits(weight: torch.Tensor, m: int) -> bool:
    return weight.ndim >= 2 and weight.shape[1] % m == 0


@torch.no_grad()
def nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the N largest |w| of every M consecutive weights along the input dimension."""
    if not nm_fits(weight, m):
        raise ValueError(f"input dimension of shape {tuple(weight.shape)} is not a multiple of {m}")
    laid_out = _groups_last(weight.detach().abs())
    groups = laid_out.reshape(-1, m)
    order = torch.argsort(groups, dim=1, stable=True)  # ascending: the M - N smallest first
    mask = torch.ones_like(groups, dtype=torch.bool)
    mask.scatter_(1, order[:, : m - n], False)
    mask = mask.reshape(laid_out.shape)
    return mask if weight.ndim == 2 else mask.movedim(-1, 1)
