"""Pruning during training: gradual magnitude pruning and N:M structured sparsity.

`magnitude` (Zhu & Gupta, 2017): every `frequency` steps between `start_step` and `end_step` each
prunable layer's mask is recomputed to the cubic schedule's sparsity from the smallest |w|.
`n_m` (Zhou et al., 2021): at `start_step` every layer whose input dimension divides by M gets an
N:M mask, kept from then on (prune once, then fine-tune; the SR-STE dense-weight variant, which
recomputes the mask at every forward, is not implemented).
Either way the mask is applied to the weights after each optimizer step, so pruned weights stay
exactly zero whatever momentum or weight decay would do; the masks are state.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias, Union

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from trainlib.compression.layers import compressible
from trainlib.compression.masks import cubic_sparsity, magnitude_mask, nm_fits, nm_mask


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start_step: int = Field(0, ge=0, description="first pruning step (steps completed)")
    include_head: bool = Field(False, description="prune the classifier too")


class MagnitudePruningSettings(_Settings):
    """Gradual magnitude pruning on Zhu & Gupta's cubic schedule."""

    name: Literal["magnitude"] = "magnitude"
    initial_sparsity: float = Field(0.0, ge=0, lt=1, description="s_i, at start_step")
    final_sparsity: float = Field(0.5, ge=0, lt=1, description="s_f, from end_step on")
    end_step: int | None = Field(
        None, ge=1, description="last pruning step; null: three quarters into training"
    )
    frequency: int = Field(100, ge=1, description="Δt: steps between mask updates")

    @model_validator(mode="after")
    def _ordered(self) -> MagnitudePruningSettings:
        if self.initial_sparsity > self.final_sparsity:
            raise ValueError("initial_sparsity must not exceed final_sparsity")
        if self.end_step is not None and self.end_step <= self.start_step:
            raise ValueError("end_step must come after start_step")
        return self


class NMSparsitySettings(_Settings):
    """N:M structured sparsity (e.g. 2:4) along each layer's input dimension."""

    name: Literal["n_m"] = "n_m"
    n: int = Field(2, ge=1, description="weights kept per group")
    m: int = Field(4, ge=2, le=64, description="group size")

    @model_validator(mode="after")
    def _n_below_m(self) -> NMSparsitySettings:
        if self.n >= self.m:
            raise ValueError("n must be smaller than m")
        return self


PruningSettings: TypeAlias = Annotated[
    Union[MagnitudePruningSettings, NMSparsitySettings],  # noqa: UP007
    Field(discriminator="name"),
]


class Pruner:
    """Masks for the prunable weights; `after_step(t)` updates them on schedule and applies them."""

    def __init__(
        self,
        settings: MagnitudePruningSettings | NMSparsitySettings,
        weights: dict[str, nn.Parameter],
        total_steps: int,
    ) -> None:
        if not weights:
            raise ValueError("pruning found no layer to prune (Linear or Conv, head excluded)")
        self.settings = settings
        self.weights = weights
        self.end_step = self._end_step(total_steps)
        self.masks = {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}

    def _end_step(self, total_steps: int) -> int:
        s = self.settings
        if isinstance(s, NMSparsitySettings):
            return s.start_step
        if s.end_step is not None:
            return s.end_step
        return max(s.start_step + 1, (3 * total_steps) // 4)

    def target_sparsity(self, t: int) -> float:
        """The magnitude schedule's sparsity after t steps (N:M: the fraction (M - N)/M)."""
        s = self.settings
        if isinstance(s, NMSparsitySettings):
            return (s.m - s.n) / s.m if t >= max(s.start_step, 1) else 0.0
        if t < s.start_step:
            return 0.0
        return cubic_sparsity(t, s.initial_sparsity, s.final_sparsity, s.start_step, self.end_step)

    def _is_update(self, t: int) -> bool:
        s = self.settings
        if isinstance(s, NMSparsitySettings):
            return t == max(s.start_step, 1)  # t counts completed steps: the first call is t = 1
        in_window = s.start_step <= t <= self.end_step
        return in_window and ((t - s.start_step) % s.frequency == 0 or t == self.end_step)

    @torch.no_grad()
    def after_step(self, t: int) -> None:
        """After the optimizer's t-th update: new masks at scheduled steps, then zero the pruned."""
        if self._is_update(t):
            s = self.settings
            for name, w in self.weights.items():
                if isinstance(s, NMSparsitySettings):
                    self.masks[name] = nm_mask(w, s.n, s.m)
                else:
                    self.masks[name] = magnitude_mask(w, self.target_sparsity(t), self.masks[name])
        for name, w in self.weights.items():
            w.mul_(self.masks[name])

    def sparsity(self) -> float:
        """Pruned fraction over every prunable weight."""
        pruned = sum(int((~m).sum()) for m in self.masks.values())
        return pruned / sum(m.numel() for m in self.masks.values())

    def state_dict(self) -> dict[str, Any]:
        return {"masks": {name: m.clone() for name, m in self.masks.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        masks = state["masks"]
        if set(masks) != set(self.masks):
            raise ValueError(f"pruning masks for {sorted(masks)}, expected {sorted(self.masks)}")
        for name, mask in masks.items():
            if mask.shape != self.masks[name].shape:
                raise ValueError(f"pruning mask {name}: shape {tuple(mask.shape)} does not fit")
            self.masks[name] = mask.to(device=self.masks[name].device, dtype=torch.bool)


def build_pruner(
    settings: MagnitudePruningSettings | NMSparsitySettings, model: nn.Module, total_steps: int
) -> Pruner:
    """A pruner over the model's Linear/Conv weights (N:M: those whose input dimension fits)."""
    weights: dict[str, nn.Parameter] = {}
    for name, layer in compressible(model, include_head=settings.include_head):
        weight = layer.weight
        assert isinstance(weight, nn.Parameter)
        if isinstance(settings, NMSparsitySettings) and not nm_fits(weight, settings.m):
            continue  # e.g. an RGB stem (3 input channels) stays dense, as NVIDIA's ASP does
        weights[f"{name}.weight"] = weight
    return Pruner(settings, weights, total_steps)
