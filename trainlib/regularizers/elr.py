"""Early-Learning Regularization (`elr`): a per-sample running target against memorising noise."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field

from trainlib.data import Task
from trainlib.registries import REGULARIZERS
from trainlib.regularizers.base import (
    PenaltyContext,
    Regularizer,
    RegularizerSettings,
    SetupContext,
)

CLAMP = 1e-4


class ElrSettings(RegularizerSettings):
    tasks: ClassVar[frozenset[Task]] = frozenset({"classification"})  # one target row per sample
    strength: float = Field(
        3.0, ge=0, le=100, description="λ (CIFAR-10 symmetric noise 3, CIFAR-100 7, asym 1)"
    )
    beta: float = Field(
        0.7, ge=0, lt=1, description="β, the targets' momentum (CIFAR-10 0.7, CIFAR-100 0.9)"
    )


def elr_term(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """mean_i log(1 − ⟨p_i, t_i⟩), p = clamp(softmax(z), 1e-4, 1 − 1e-4), t held constant."""
    p = F.softmax(logits, dim=1).clamp(CLAMP, 1 - CLAMP)
    return torch.log(1 - (targets * p).sum(dim=1)).mean()


class Elr(Regularizer):
    """L = CE(z, y) + λ · mean_i log(1 − ⟨p_i, t_i⟩) (the CE is the job's loss).

    Before the term, the targets of the batch's samples move towards the model's clamped and
    renormalised prediction: t_i ← β t_i + (1 − β) p̂_i / Σ_c p̂_ic, p̂ = p without gradient.
    The table t (train_size × classes, zeros at the start) is indexed by the samples' positions in
    the training set and is part of the state. It is updated once per step, so a step strategy's
    second pass reuses the first pass's targets. Early-Learning Regularization Prevents
    Memorization of Noisy Labels (Liu, Niles-Weed, Razavian, Fernandez-Granda, 2020); the
    authors' `ELR/model/loss.py` (not ELR+).
    """

    def __init__(self, s: ElrSettings, train_size: int, num_classes: int) -> None:
        self.s = s
        self.targets = torch.zeros(train_size, num_classes)
        self.updated_at = -1  # the step whose batch last moved the targets

    @torch.no_grad()
    def update(self, logits: torch.Tensor, indices: torch.Tensor) -> None:
        # the table follows the logits' device and (at least float32) precision
        self.targets = self.targets.to(logits.device, logits.dtype)
        p = F.softmax(logits.detach(), dim=1).clamp(CLAMP, 1 - CLAMP)
        p = p / p.sum(dim=1, keepdim=True)
        self.targets[indices] = self.s.beta * self.targets[indices] + (1 - self.s.beta) * p

    def penalty(self, ctx: PenaltyContext) -> torch.Tensor:
        logits = ctx.logits.to(torch.promote_types(ctx.logits.dtype, torch.float32))
        if ctx.step != self.updated_at:
            self.update(logits, ctx.indices)
            self.updated_at = ctx.step
        return self.s.strength * elr_term(logits, self.targets[ctx.indices])

    def state_dict(self) -> dict[str, Any]:
        return {"targets": self.targets.clone(), "updated_at": self.updated_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        targets = state["targets"]
        if targets.shape != self.targets.shape:
            raise ValueError(
                f"elr: saved targets have shape {tuple(targets.shape)}, "
                f"expected {tuple(self.targets.shape)}"
            )
        self.targets = targets.to(self.targets.device, self.targets.dtype).clone()
        self.updated_at = int(state["updated_at"])


@REGULARIZERS.register(
    "elr",
    settings=ElrSettings,
    summary="early-learning regularization: agree with a running average of own predictions",
    paper="Early-Learning Regularization Prevents Memorization of Noisy Labels (Liu et al., 2020)",
)
def build_elr(s: ElrSettings, setup: SetupContext) -> Regularizer:
    return Elr(s, setup.train_size, setup.info.num_classes)
