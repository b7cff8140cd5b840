"""`group_sparsity`: structured sparsity over groups of weights (filters or input channels).

kind `group_lasso` (Yuan & Lin 2006; for DNNs "Learning Structured Sparsity in Deep Neural
Networks", Wen et al. 2016): R = λ Σ_g c_g ‖w_g‖₂ with c_g = √|g|. Either by autograd (a
sub-gradient: groups shrink but never reach exact zeros) or, with `proximal`, by block
soft-thresholding after each optimizer step, w_g ← max(0, 1 − η λ c_g / ‖w_g‖) w_g.

kind `k_level` ("Learning k-Level Structured Sparse Neural Networks Using Group Envelope
Regularization", Refael, Arbel, Huleihel, arXiv 2212.12921): the group sparse envelope
S_k(v) = ½ (k-support norm of v)², v_g = d_g ‖w_g‖₂, the convex envelope of ½ Σ v_g² restricted
to at most k non-zero groups. Closed form: z = |v| sorted decreasing, z₀ = +∞, the unique
r ∈ {0..k−1} with z_{k−r−1} > (1/(r+1)) Σ_{i≥k−r} z_i ≥ z_{k−r} gives
S_k = ½ [Σ_{i<k−r} z_i² + (1/(r+1)) (Σ_{i≥k−r} z_i)²]. k = 1: ½ (Σ v_g)²; k = m: ½ Σ v_g².
Trained here by sub-gradient through the closed form (the paper's linear-time prox is not
reproduced). Groups are taken per layer, with k_l = ⌈keep_fraction · m_l⌉ of its m_l groups.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from trainlib.registries import REGULARIZERS
from trainlib.regularizers.base import (
    PenaltyContext,
    Regularizer,
    RegularizerSettings,
    SetupContext,
)

Groups = Literal["filters", "inputs"]


class GroupSparsitySettings(RegularizerSettings):
    strength: float = Field(1e-4, ge=0, le=100, description="λ")
    kind: Literal["group_lasso", "k_level"] = Field("group_lasso", description="the penalty")
    groups: Groups = Field(
        "filters", description="filters: rows of W.view(out, −1); inputs: input channels"
    )
    group_weight: Literal["sqrt_size", "one"] | None = Field(
        None, description="c_g (d_g): √|g| or 1; default √|g| for group_lasso, 1 for k_level"
    )
    keep_fraction: float = Field(
        0.5, gt=0, le=1, description="k_level: k_l = ⌈keep_fraction · groups in layer l⌉"
    )
    proximal: bool = Field(
        False, description="group_lasso: block soft-thresholding after each step (exact zeros)"
    )

    @model_validator(mode="after")
    def _kind_options(self) -> GroupSparsitySettings:
        if self.proximal and self.kind != "group_lasso":
            raise ValueError("proximal applies to kind group_lasso only")
        if self.kind == "group_lasso" and "keep_fraction" in self.model_fields_set:
            raise ValueError("keep_fraction applies to kind k_level only")
        return self


def _group_dim(groups: Groups) -> int:
    return 0 if groups == "filters" else 1


def group_norms(w: torch.Tensor, groups: Groups = "filters") -> torch.Tensor:
    """‖w_g‖₂ per group: over every dim but the output (filters) or input (inputs) dim."""
    keep = _group_dim(groups)
    dims = [d for d in range(w.ndim) if d != keep]
    norms: torch.Tensor = torch.linalg.vector_norm(w, dim=dims)
    return norms


def group_envelope(v: torch.Tensor, k: int) -> torch.Tensor:
    """S_k(v) = ½ (k-support norm of v)² by the closed form (1 ≤ k ≤ len(v))."""
    m = v.numel()
    k = max(1, min(k, m))
    z = torch.sort(v.abs(), descending=True).values
    tail = torch.flip(torch.cumsum(torch.flip(z, [0]), 0), [0])  # tail[s] = Σ_{i≥s} z_i
    head_sq = torch.cumsum(z.pow(2), 0) - z.pow(2)  # head_sq[s] = Σ_{i<s} z_i²
    r = torch.arange(k, device=v.device)
    start = k - 1 - r  # 0-based first index of the averaged tail
    avg = tail[start] / (r + 1).to(z.dtype)
    above = torch.cat([z.new_full((1,), math.inf), z])[start]  # z_{start−1}, z_{−1} = +∞
    values = 0.5 * (head_sq[start] + tail[start] * avg)
    # the r whose inequalities hold (violation 0); ties give equal values for neighbouring r
    with torch.no_grad():
        violation = torch.relu(avg - above) + torch.relu(z[start] - avg)
        pick = torch.argmin(violation)
    return values[pick]


class GroupSparsity(Regularizer):
    """λ Σ_l [Σ_g c_g ‖w_g‖  or  S_k(d ⊙ ‖w_g‖)] over every weight tensor with ≥ 2 dims."""

    def __init__(self, s: GroupSparsitySettings) -> None:
        self.s = s
        weight = s.group_weight or ("sqrt_size" if s.kind == "group_lasso" else "one")
        self.sqrt_size = weight == "sqrt_size"
        self.weights: list[nn.Parameter] = []

    def configure_model(self, model: nn.Module) -> None:
        self.weights = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]

    def _coefficient(self, w: torch.Tensor) -> float:
        size = w.numel() // w.shape[_group_dim(self.s.groups)]
        return math.sqrt(size) if self.sqrt_size else 1.0

    def _term(self, w: torch.Tensor) -> torch.Tensor:
        v = self._coefficient(w) * group_norms(w, self.s.groups)
        if self.s.kind == "group_lasso":
            return v.sum()
        return group_envelope(v, math.ceil(self.s.keep_fraction * v.numel()))

    def penalty(self, ctx: PenaltyContext) -> torch.Tensor | None:
        if not self.weights:
            return None
        value = self.s.strength * torch.stack([self._term(w) for w in self.weights]).sum()
        # with the proximal step the penalty acts through after_step; it is only logged here
        return value.detach() if self.s.proximal else value

    @torch.no_grad()
    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
        if not self.s.proximal:
            return
        lrs = {id(p): float(g["lr"]) for g in optimizer.param_groups for p in g["params"]}
        dim = _group_dim(self.s.groups)
        for w in self.weights:
            threshold = lrs.get(id(w), 0.0) * self.s.strength * self._coefficient(w)
            norms = group_norms(w, self.s.groups)
            scale = torch.clamp(1 - threshold / norms.clamp_min(1e-30), min=0)
            shape = [1] * w.ndim
            shape[dim] = -1
            w.mul_(scale.view(shape))


@REGULARIZERS.register(
    "group_sparsity",
    settings=GroupSparsitySettings,
    summary="structured sparsity over filters or input channels: group lasso or k-level "
    "group envelope",
    paper="Learning k-Level Structured Sparse Neural Networks Using Group Envelope "
    "Regularization (Refael, Arbel, Huleihel, 2022); Learning Structured Sparsity in Deep "
    "Neural Networks (Wen et al., 2016)",
)
def build_group_sparsity(s: GroupSparsitySettings, setup: SetupContext) -> Regularizer:
    return GroupSparsity(s)
