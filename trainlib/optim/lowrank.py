"""Low-rank gradient projection shared by `galore` and `frugal`.

A weight matrix's gradient G (m×n) is projected onto a subspace of one side (or both): the
'right' side keeps P r×n (R = G Pᵀ), the 'left' side P m×r (R = Pᵀ G), 'full' both (Uᵀ G Vᵀ).
The Adam moments live on R, and the update is lifted back with the same basis.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any, Literal

import torch

Side = Literal["right", "left", "full"]


def as_matrix(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1) if t.ndim > 2 else t


def resolve_side(proj_type: str, rows: int, cols: int) -> Side:
    if proj_type == "std":
        return "right" if rows >= cols else "left"
    if proj_type == "reverse_std":
        return "left" if rows >= cols else "right"
    if proj_type in ("right", "left", "full"):
        return proj_type  # type: ignore[return-value]
    raise ValueError(f"unknown projection type {proj_type!r}")


def _fix_signs(vectors: torch.Tensor, dim: int) -> torch.Tensor:
    """Flip each vector (along `dim`) so its largest-magnitude entry is positive."""
    idx = vectors.abs().argmax(dim=dim, keepdim=True)
    signs = torch.sign(torch.gather(vectors, dim, idx))
    return vectors * torch.where(signs == 0, torch.ones_like(signs), signs)


def svd_basis(g: torch.Tensor, rank: int, side: Side) -> list[torch.Tensor]:
    """Top-`rank` singular vectors: [P r×n] (right), [P m×r] (left) or [U m×r, V r×n] (full)."""
    work = g if g.dtype in (torch.float32, torch.float64) else g.float()
    u, _, vh = torch.linalg.svd(work, full_matrices=False)
    left = _fix_signs(u[:, :rank], dim=0).to(g.dtype)
    right = _fix_signs(vh[:rank, :], dim=1).to(g.dtype)
    if side == "right":
        return [right]
    if side == "left":
        return [left]
    return [left, right]


def project(g: torch.Tensor, basis: Sequence[torch.Tensor], side: Side) -> torch.Tensor:
    if side == "right":
        return g @ basis[0].mT
    if side == "left":
        return basis[0].mT @ g
    return basis[0].mT @ g @ basis[1].mT


def project_back(low: torch.Tensor, basis: Sequence[torch.Tensor], side: Side) -> torch.Tensor:
    if side == "right":
        return low @ basis[0]
    if side == "left":
        return basis[0] @ low
    return basis[0] @ low @ basis[1]


def param_names(group: dict[str, Any]) -> list[str]:
    params = group["params"]
    return list(group.get("names") or [""] * len(params))


def is_projectable(p: torch.Tensor, name: str, group: dict[str, Any]) -> bool:
    """Hidden weight matrices: ndim ≥ 2, not the classifier, not an `adamw_for` name."""
    if p.ndim < 2 or group.get("final_layer", False):
        return False
    return not any(fnmatchcase(name, pattern) for pattern in group["adamw_for"])


def update_moments(
    moments: list[tuple[torch.Tensor, torch.Tensor]],
    inputs: list[torch.Tensor],
    betas: tuple[float, float],
    foreach: bool,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """m ← β1 m + (1 − β1) x ;  v ← β2 v + (1 − β2) x², in place; returns (ms, vs)."""
    beta1, beta2 = betas
    ms = [m for m, _ in moments]
    vs = [v for _, v in moments]
    if foreach:
        torch._foreach_mul_(ms, beta1)
        torch._foreach_add_(ms, inputs, alpha=1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, inputs, inputs, value=1 - beta2)
    else:
        for m, v, x in zip(ms, vs, inputs, strict=True):
            m.mul_(beta1).add_(x, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(x, x, value=1 - beta2)
    return ms, vs


def adam_directions(
    moments: list[tuple[torch.Tensor, torch.Tensor]],
    inputs: list[torch.Tensor],
    betas: tuple[float, float],
    eps: float,
    foreach: bool,
) -> list[torch.Tensor]:
    """Update the moments with `inputs` in place; return m / (sqrt(v) + ε) for each."""
    ms, vs = update_moments(moments, inputs, betas, foreach)
    if foreach:
        denom = torch._foreach_sqrt(vs)
        torch._foreach_add_(denom, eps)
        return list(torch._foreach_div(ms, denom))
    return [m / v.sqrt().add_(eps) for m, v in zip(ms, vs, strict=True)]
