"""`spectral`: keep each layer's largest singular value near 1 and its biases near 0.

"Learning Continually by Spectral Regularization" (Lewandowski, Bortkiewicz, Kumar, György,
Schuurmans, Ostaszewski, Machado; ICLR 2025, arXiv 2406.06811):

    R(θ) = Σ_l [ (σ₁(W_l)^k − 1)² + ‖b_l‖₂^(2k) ] + Σ_norm [ Σ_i (γ_i^k − 1)² + Σ_i β_i^(2k) ]

loss L + λR, k = 2. σ₁ comes from power iteration with persistent vectors (as in spectral
normalisation): once per training step `v ← normalize(Wᵀu)`, `u ← normalize(Wv)`, then
`σ₁ ≈ uᵀWv` with u, v constants, so ∂σ₁/∂W = u vᵀ. Conv kernels are flattened to (out, in·kh·kw).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from trainlib.registries import REGULARIZERS
from trainlib.regularizers.base import (
    PenaltyContext,
    Regularizer,
    RegularizerSettings,
    SetupContext,
)

#: diagonal linear maps: their gains go to 1 elementwise, their shifts to 0
NORM_LAYERS: tuple[type[nn.Module], ...] = (_NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)
#: like torch.nn.utils.parametrizations.spectral_norm: start u, v near the top pair
WARMUP_ITERATIONS = 15
EPS = 1e-12


class SpectralSettings(RegularizerSettings):
    strength: float = Field(
        1e-4, ge=0, le=100, description="λ (1e-4 as re-implementations attribute to the paper)"
    )
    exponent: int = Field(2, ge=1, le=8, description="k in (σ₁^k − 1)² and ‖b‖^(2k)")
    power_iterations: int = Field(1, ge=1, le=100, description="power-iteration steps per step")
    include_biases: bool = Field(True, description="‖b‖^(2k) toward 0 for 1-D tensors")
    include_norm_layers: bool = Field(
        True, description="norm gains γ toward 1 and shifts β toward 0, elementwise"
    )


def power_iteration(
    w: torch.Tensor, u: torch.Tensor, v: torch.Tensor, steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`steps` rounds of v ← normalize(Wᵀu), u ← normalize(Wv) on the (out, fan_in) matrix w."""
    with torch.no_grad():
        for _ in range(steps):
            v = F.normalize(torch.mv(w.t(), u), dim=0, eps=EPS)
            u = F.normalize(torch.mv(w, v), dim=0, eps=EPS)
    return u, v


def sigma_max(w: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """uᵀ W v with u, v constants: the top singular value once u, v have converged."""
    return torch.dot(u.detach(), torch.mv(w, v.detach()))


def spectral_value(
    sigmas: list[torch.Tensor],
    biases: list[torch.Tensor],
    gains: list[torch.Tensor],
    shifts: list[torch.Tensor],
    k: int,
) -> torch.Tensor:
    """R(θ) from the top singular values, biases, norm gains and norm shifts."""
    terms = [(s.pow(k) - 1).pow(2) for s in sigmas]
    terms += [b.pow(2).sum().pow(k) for b in biases]
    terms += [(g.pow(k) - 1).pow(2).sum() for g in gains]
    terms += [b.pow(2 * k).sum() for b in shifts]
    return torch.stack(terms).sum()


class Spectral(Regularizer):
    """λ Σ_l (σ₁(W_l)^k − 1)² (+ bias and norm-layer terms), σ₁ by persistent power iteration.

    The vectors advance once per training step (the first penalty call of a step), not on
    every call: a two-pass step strategy evaluates the penalty twice on the same step.
    """

    def __init__(self, s: SpectralSettings, seed: int) -> None:
        self.s = s
        self.seed = seed
        self.matrices: dict[str, nn.Parameter] = {}
        self.u: dict[str, torch.Tensor] = {}
        self.v: dict[str, torch.Tensor] = {}
        self.biases: list[nn.Parameter] = []
        self.gains: list[nn.Parameter] = []
        self.shifts: list[nn.Parameter] = []
        self._iterated_at: int | None = None

    def configure_model(self, model: nn.Module) -> None:
        # a generator of its own: the starting vectors do not consume the job's random stream
        gen = torch.Generator().manual_seed(self.seed)
        for module_name, module in model.named_modules():
            is_norm = isinstance(module, NORM_LAYERS)
            for name, p in module.named_parameters(recurse=False):
                if not p.requires_grad:
                    continue
                full = f"{module_name}.{name}" if module_name else name
                if is_norm:
                    if self.s.include_norm_layers:
                        (self.gains if name == "weight" else self.shifts).append(p)
                elif p.ndim >= 2:
                    w = p.detach().reshape(p.shape[0], -1)
                    u0 = torch.randn(w.shape[0], generator=gen, dtype=torch.float64)
                    u0 = F.normalize(u0, dim=0, eps=EPS).to(w)
                    v0 = torch.zeros(w.shape[1], dtype=w.dtype, device=w.device)
                    self.u[full], self.v[full] = power_iteration(w, u0, v0, WARMUP_ITERATIONS)
                    self.matrices[full] = p
                elif self.s.include_biases:
                    self.biases.append(p)

    def _advance(self) -> None:
        for name, p in self.matrices.items():
            w = p.detach().reshape(p.shape[0], -1)
            self.u[name], self.v[name] = power_iteration(
                w, self.u[name], self.v[name], self.s.power_iterations
            )

    def sigmas(self) -> dict[str, torch.Tensor]:
        """The current estimates of σ₁ per weight matrix (differentiable in W)."""
        return {
            name: sigma_max(p.reshape(p.shape[0], -1), self.u[name], self.v[name])
            for name, p in self.matrices.items()
        }

    def penalty(self, ctx: PenaltyContext) -> torch.Tensor | None:
        if self._iterated_at != ctx.step:
            self._advance()
            self._iterated_at = ctx.step
        sigmas = list(self.sigmas().values())
        if not (sigmas or self.biases or self.gains or self.shifts):
            return None
        value = spectral_value(
            sigmas, list(self.biases), list(self.gains), list(self.shifts), self.s.exponent
        )
        return self.s.strength * value

    def state_dict(self) -> dict[str, Any]:
        return {"u": dict(self.u), "v": dict(self.v)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, mine in (("u", self.u), ("v", self.v)):
            saved: dict[str, torch.Tensor] = state[key]
            if sorted(saved) != sorted(mine):
                raise ValueError(f"{self.name}: {key} holds {sorted(saved)}, model {sorted(mine)}")
            for name, tensor in saved.items():
                if tensor.shape != mine[name].shape:
                    raise ValueError(f"{self.name}: {key}[{name}] has shape {tuple(tensor.shape)}")
                mine[name] = tensor.detach().to(mine[name]).clone()
        # the next step advances the loaded vectors, as the uninterrupted run would
        self._iterated_at = None


@REGULARIZERS.register(
    "spectral",
    settings=SpectralSettings,
    summary="spectral regularizer: each layer's top singular value toward 1, biases toward 0",
    paper="Learning Continually by Spectral Regularization (Lewandowski et al., 2025)",
)
def build_spectral(s: SpectralSettings, setup: SetupContext) -> Regularizer:
    return Spectral(s, setup.seed)
