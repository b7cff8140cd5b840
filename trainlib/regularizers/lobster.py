"""`lobster`: LOss-Based SensiTivity rEgulaRization, a post-gradient weight rule.

"LOss-Based SensiTivity rEgulaRization: towards deep sparse neural networks" (Tartaglione et
al., arXiv 2011.09905). For every parameter (weights and biases) of the Linear/Conv layers,
elementwise:

    S = |∂L/∂w|,    w ← w − λ · w · max(0, 1 − S)

(`rescaled`: S = |g| / max(max|g|, 1e-10) per tensor, insensitivity 1 − S). Weights the loss is
insensitive to decay geometrically; those with |g| ≥ 1 are untouched. λ is not multiplied by
the learning rate.

Why `after_step` and not a penalty: the rule changes the weights directly by an amount that does
not pass through the optimizer (no lr, no Adam normalisation), so no surrogate loss has a gradient
that reproduces it through an arbitrary optimizer. The authors' lab code (EIDOSearch `LOBSTER`,
called after `optimizer.step()`) applies it exactly here: after the update, with the step's
gradient still in `.grad` (for a two-pass step strategy, the second pass's gradient). Nothing is
added to the loss, so no `reg/lobster` is logged. The paper's magnitude-pruning schedule (and
the optional Adam-like sensitivity) are not part of this regularizer.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from trainlib.registries import REGULARIZERS
from trainlib.regularizers.base import Regularizer, RegularizerSettings, SetupContext

LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class LobsterSettings(RegularizerSettings):
    strength: float = Field(1e-4, gt=0, lt=1, description="λ, per step (not scaled by the lr)")
    rescaled: bool = Field(False, description="S = |g| / max|g| per tensor (reference option)")
    include_biases: bool = Field(True, description="also the layers' biases (reference: yes)")


@torch.no_grad()
def lobster_update(p: torch.Tensor, grad: torch.Tensor, strength: float, rescaled: bool) -> None:
    """In place: p ← p − λ p ⊙ insensitivity(grad)."""
    sensitivity = grad.abs().to(p.dtype)
    if rescaled:
        insensitivity = 1 - sensitivity / sensitivity.max().clamp_min(1e-10)
    else:
        insensitivity = torch.relu(1 - sensitivity)
    p.sub_(p * insensitivity, alpha=strength)


class Lobster(Regularizer):
    """After each optimizer step, shrinks each weight by λ·max(0, 1 − |∂L/∂w|) of itself."""

    def __init__(self, s: LobsterSettings) -> None:
        self.s = s
        self.params: list[nn.Parameter] = []

    def configure_model(self, model: nn.Module) -> None:
        for module in model.modules():
            if isinstance(module, LAYERS):
                self.params += [
                    p
                    for name, p in module.named_parameters(recurse=False)
                    if p.requires_grad and (self.s.include_biases or name != "bias")
                ]

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
        for p in self.params:
            if p.grad is not None:
                lobster_update(p, p.grad, self.s.strength, self.s.rescaled)


@REGULARIZERS.register(
    "lobster",
    settings=LobsterSettings,
    summary="LOBSTER: shrink the weights the loss is insensitive to, λ·w·max(0, 1 − |∂L/∂w|)",
    paper="LOss-Based SensiTivity rEgulaRization: towards deep sparse neural networks "
    "(Tartaglione et al., 2020)",
)
def build_lobster(s: LobsterSettings, setup: SetupContext) -> Regularizer:
    return Lobster(s)
