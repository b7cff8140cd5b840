"""`orthogonality`: soft orthogonality (SO), double-sided SO (DSO), mutual coherence (MC), SRIP.

"Can We Gain More from Orthogonality Regularizations in Training Deep CNNs?" (Bansal, Chen,
Wang; NeurIPS 2018, arXiv 1810.09102). A layer's weight is flattened to W₂ = W.view(out, −1);
in the paper's notation W = W₂ᵀ has one filter per column, so WᵀW = W₂W₂ᵀ (out × out):

    SO   λ ‖WᵀW − I‖_F²
    DSO  λ (‖WᵀW − I‖_F² + ‖WWᵀ − I‖_F²)
    MC   λ ‖WᵀW − I‖_∞            (largest absolute entry)
    SRIP λ Σ_l ‖A v‖²,  A = Gram on the smaller side − I, v = A b / ‖A b‖

SRIP follows the authors' PyTorch code (`Wide-Resnet/train_n.py`): one power-iteration step from a
fresh uniform random b per call, squared (→ σ(A)² when the iteration has converged); gradients
flow through v as in that code. Applied to every tensor with ≥ 2 dims, the classifier included.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from trainlib.registries import REGULARIZERS
from trainlib.regularizers.base import (
    PenaltyContext,
    Regularizer,
    RegularizerSettings,
    SetupContext,
)

Variant = Literal["so", "dso", "mc", "srip"]
EPS = 1e-12


class OrthogonalitySettings(RegularizerSettings):
    strength: float = Field(
        1e-2, ge=0, le=100, description="λ (SRIP code: 1e-2 for the first 20 epochs)"
    )
    variant: Variant = Field("srip", description="so | dso | mc | srip")
    power_iterations: int = Field(
        1, ge=1, le=100, description="SRIP: power steps from the random start (code: 1)"
    )


def gram_residual(w: torch.Tensor, side: Literal["filters", "inputs", "smaller"]) -> torch.Tensor:
    """W₂W₂ᵀ − I (filters), W₂ᵀW₂ − I (inputs), or the smaller of the two (SRIP's code)."""
    w2 = w.reshape(w.shape[0], -1)
    out, fan_in = w2.shape
    by_inputs = side == "inputs" or (side == "smaller" and out > fan_in)
    gram = w2.t() @ w2 if by_inputs else w2 @ w2.t()
    return gram - torch.eye(gram.shape[0], dtype=w.dtype, device=w.device)


def srip_term(a: torch.Tensor, b: torch.Tensor, steps: int = 1) -> torch.Tensor:
    """‖A v‖² after `steps` power steps v ← A v / ‖A v‖ from b (not detached, as in the code)."""
    v = b
    for _ in range(steps):
        av = a @ v
        v = av / torch.linalg.vector_norm(av).clamp_min(EPS)
    return (a @ v).pow(2).sum()


def orthogonality_term(
    w: torch.Tensor, variant: Variant, b: torch.Tensor | None = None, steps: int = 1
) -> torch.Tensor:
    """One layer's term (before λ); `b` is SRIP's starting vector (size of the smaller side)."""
    if variant == "srip":
        assert b is not None
        return srip_term(gram_residual(w, "smaller"), b, steps)
    residual = gram_residual(w, "filters")
    if variant == "mc":
        return residual.abs().amax()
    value = residual.pow(2).sum()
    if variant == "dso":
        value = value + gram_residual(w, "inputs").pow(2).sum()
    return value


class Orthogonality(Regularizer):
    """λ Σ_l term(W_l) for the chosen variant; SRIP draws its start vectors from a seeded
    generator of its own (checkpointed, so a resumed run draws the same vectors)."""

    def __init__(self, s: OrthogonalitySettings, seed: int) -> None:
        self.s = s
        self.generator = torch.Generator().manual_seed(seed)
        self.weights: list[nn.Parameter] = []

    def configure_model(self, model: nn.Module) -> None:
        self.weights = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]

    def _start(self, w: torch.Tensor) -> torch.Tensor:
        n = min(w.shape[0], w[0].numel())
        # drawn on the CPU so that the stream is the same on every device
        return torch.rand(n, generator=self.generator, dtype=torch.float64).to(w)

    def penalty(self, ctx: PenaltyContext) -> torch.Tensor | None:
        if not self.weights:
            return None
        terms = [
            orthogonality_term(
                w,
                self.s.variant,
                self._start(w) if self.s.variant == "srip" else None,
                self.s.power_iterations,
            )
            for w in self.weights
        ]
        return self.s.strength * torch.stack(terms).sum()

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()} if self.s.variant == "srip" else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.s.variant == "srip":
            self.generator.set_state(state["generator"])
        else:
            super().load_state_dict(state)


@REGULARIZERS.register(
    "orthogonality",
    settings=OrthogonalitySettings,
    summary="orthogonality penalties on the weight Gram matrix: SO, DSO, MC, SRIP",
    paper="Can We Gain More from Orthogonality Regularizations in Training Deep CNNs? "
    "(Bansal, Chen, Wang, 2018)",
)
def build_orthogonality(s: OrthogonalitySettings, setup: SetupContext) -> Regularizer:
    return Orthogonality(s, setup.seed)
