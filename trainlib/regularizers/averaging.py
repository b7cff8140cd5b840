"""Weight averaging: `ema` (with the batch-size scaling rule of "How to Scale Your EMA"), `swa`
(equal-weight mean of snapshots, batch-norm statistics recomputed) and `lawa` (mean of the k
latest snapshots). Each keeps its averaged copy and hands it to the loop to evaluate beside the
raw model.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from pydantic import Field, field_validator
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from trainlib.registries import REGULARIZERS
from trainlib.regularizers.base import Regularizer, RegularizerSettings, SetupContext


class EmaSettings(RegularizerSettings):
    decay: float = Field(0.999, gt=0, lt=1, description="ρ at the reference batch size")
    reference_batch_size: int | None = Field(
        None, ge=1, description="B₀ for the scaling rule ρ̂ = ρ^(B/B₀); None: no scaling"
    )
    warmup: bool = Field(False, description="ρ_t = min(ρ, (1 + t)/(10 + t))")
    average_buffers: bool = Field(False, description="average BN statistics too (else copy)")


class Ema(Regularizer):
    """θ_ema ← ρ θ_ema + (1 − ρ) θ after every step; evaluated beside the raw model."""

    def __init__(self, s: EmaSettings, batch_size: int) -> None:
        self.s = s
        kappa = batch_size / s.reference_batch_size if s.reference_batch_size else 1.0
        self.decay = s.decay**kappa
        self.model: nn.Module | None = None
        self.updates = 0

    def configure_model(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
        assert self.model is not None
        rho = self.decay
        if self.s.warmup:
            rho = min(rho, (1 + self.updates) / (10 + self.updates))
        ema: list[torch.Tensor] = list(self.model.parameters())
        torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 1 - rho)
        for mine, theirs in zip(self.model.buffers(), model.buffers(), strict=True):
            if self.s.average_buffers and mine.is_floating_point():
                mine.lerp_(theirs, 1 - rho)
            else:
                mine.copy_(theirs)
        self.updates += 1

    def evaluation_model(self) -> nn.Module | None:
        return self.model

    def state_dict(self) -> dict[str, Any]:
        assert self.model is not None
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.model is not None
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


@REGULARIZERS.register(
    "ema",
    settings=EmaSettings,
    summary="exponential moving average of the weights, with the EMA scaling rule",
    paper="How to Scale Your EMA (Busbridge et al., 2023)",
)
def build_ema(s: EmaSettings, setup: SetupContext) -> Regularizer:
    return Ema(s, setup.batch_size)


def _frozen_copy(model: nn.Module) -> nn.Module:
    averaged = copy.deepcopy(model).eval()
    for p in averaged.parameters():
        p.requires_grad_(False)
    return averaged


def _start_step(start: float, total_steps: int) -> int:
    """`start` below 1 is a fraction of the run, from 1 on a step count."""
    return round(start * total_steps) if start < 1 else int(start)


class SwaSettings(RegularizerSettings):
    start: float = Field(
        0.55,
        ge=0,
        le=10_000_000,
        description="first snapshot: a fraction of the run if < 1, else a step (the reference "
        "code starts at 126 of 225 and 161 of 300 epochs: ≈ 0.55)",
    )
    every: int | None = Field(
        None, ge=1, le=10_000_000, description="steps between snapshots; None: every epoch"
    )

    @field_validator("start")
    @classmethod
    def _whole_step(cls, value: float) -> float:
        if value >= 1 and value != int(value):
            raise ValueError("start is a fraction of the run (< 1) or a whole step (>= 1)")
        return value


def refresh_batchnorm_statistics(
    model: nn.Module, batches: Iterable[torch.Tensor | tuple[torch.Tensor, ...]]
) -> None:
    """Recompute every batch norm's running statistics with one pass over `batches`.

    As the reference's `bn_update`: statistics reset (mean 0, var 1), then each batch of b samples
    is weighted with momentum b / (n_seen + b), so the result is the mean over all samples (a
    ragged last batch counts for what it holds); train mode during the pass, momenta restored.
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.running_mean is not None]
    if not norms:
        return
    momenta = {m: m.momentum for m in norms}
    for m in norms:
        m.reset_running_stats()
    was_training = model.training
    model.train()
    device = next(iter(norms[0].buffers())).device
    seen = 0
    with torch.no_grad():
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            b = len(x)
            for m in norms:
                m.momentum = b / (seen + b)
            model(x.to(device))
            seen += b
    for m, momentum in momenta.items():
        m.momentum = momentum
    model.train(was_training)


class Swa(Regularizer):
    """Stochastic weight averaging (Izmailov et al., "Averaging Weights Leads to Wider Optima and
    Better Generalization", 2018): from step `start`, every `every` steps,
    θ_swa ← θ_swa·n/(n + 1) + θ/(n + 1), n ← n + 1 (the arithmetic mean of the snapshots).

    Buffers are copied from the online model at each snapshot; batch-norm statistics of θ_swa must
    be recomputed on the training data before it is evaluated (`refresh_batchnorm`, which the loop
    calls with the training batches; without it the online model's statistics are used). The
    learning-rate schedule of the paper (constant or cyclic SWA lr) is the schedule's business.
    """

    def __init__(self, s: SwaSettings, setup: SetupContext) -> None:
        self.start = _start_step(s.start, setup.total_steps)
        self.every = s.every or setup.steps_per_epoch
        self.model: nn.Module | None = None
        self.n_averaged = 0
        #: snapshots taken since batch-norm statistics were last recomputed
        self.batchnorm_stale = False

    def configure_model(self, model: nn.Module) -> None:
        self.model = _frozen_copy(model)

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
        done = step + 1
        if done >= self.start and (done - self.start) % self.every == 0:
            self.collect(model)

    @torch.no_grad()
    def collect(self, model: nn.Module) -> None:
        assert self.model is not None
        averaged: list[torch.Tensor] = list(self.model.parameters())
        # lerp with weight 1/(n + 1) is the running mean; the first snapshot is copied exactly
        torch._foreach_lerp_(
            averaged, [p.detach() for p in model.parameters()], 1 / (self.n_averaged + 1)
        )
        for mine, theirs in zip(self.model.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)
        self.n_averaged += 1
        self.batchnorm_stale = any(isinstance(m, _BatchNorm) for m in self.model.modules())

    def refresh_batchnorm(self, batches: Iterable[torch.Tensor | tuple[torch.Tensor, ...]]) -> None:
        """Recompute θ_swa's batch-norm statistics from the training batches (x or (x, y, ...)).

        Does nothing when no snapshot was taken since the last refresh, or without batch norm.
        """
        if self.model is None or not self.batchnorm_stale:
            return
        refresh_batchnorm_statistics(self.model, batches)
        self.batchnorm_stale = False

    def evaluation_model(self) -> nn.Module | None:
        return self.model if self.n_averaged else None

    def state_dict(self) -> dict[str, Any]:
        assert self.model is not None
        return {
            "model": self.model.state_dict(),
            "n_averaged": self.n_averaged,
            "batchnorm_stale": self.batchnorm_stale,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.model is not None
        self.model.load_state_dict(state["model"])
        self.n_averaged = int(state["n_averaged"])
        self.batchnorm_stale = bool(state["batchnorm_stale"])


class LawaSettings(RegularizerSettings):
    k: int = Field(5, ge=1, le=100, description="number of latest snapshots averaged")
    every: int = Field(200, ge=1, le=10_000_000, description="ν: steps between snapshots")


class Lawa(Regularizer):
    """Latest weight averaging (Sanyal et al., "Early Weight Averaging meets High Learning Rates
    for LLM Pre-training", 2023): θ_LAWA(t) = (1/k) Σ_{i<k} θ_{t − iν}, the uniform mean of the k
    latest snapshots taken every ν steps (older ones leave the window, unlike SWA).

    As the reference code: every floating-point parameter and buffer is averaged, incrementally
    (avg ← avg + (θ − avg)/n, oldest first); integer buffers come from the newest snapshot. The
    snapshots live in a ring buffer on the model's device (k copies of the weights).
    """

    def __init__(self, s: LawaSettings) -> None:
        self.k = s.k
        self.every = s.every
        self.model: nn.Module | None = None
        self.slots: list[list[torch.Tensor]] = []
        self.head = 0  # the slot the next snapshot overwrites once the buffer is full
        self.collected = 0
        self._stale = False

    def configure_model(self, model: nn.Module) -> None:
        self.model = _frozen_copy(model)

    def _entries(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(floating-point entries, the others) of a state dict, in a fixed order."""
        values = list(model.state_dict(keep_vars=True).values())
        floats = [v.detach() for v in values if v.is_floating_point()]
        others = [v.detach() for v in values if not v.is_floating_point()]
        return floats, others

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
        if (step + 1) % self.every == 0:
            self.collect(model)

    @torch.no_grad()
    def collect(self, model: nn.Module) -> None:
        assert self.model is not None
        floats, others = self._entries(model)
        if len(self.slots) < self.k:
            self.slots.append([t.clone() for t in floats])
        else:
            torch._foreach_copy_(self.slots[self.head], floats)
            self.head = (self.head + 1) % self.k
        for mine, theirs in zip(self._entries(self.model)[1], others, strict=True):
            mine.copy_(theirs)
        self.collected += 1
        self._stale = True

    def snapshots(self) -> list[list[torch.Tensor]]:
        """The stored snapshots, oldest first."""
        return self.slots[self.head :] + self.slots[: self.head]

    @torch.no_grad()
    def _average(self) -> None:
        assert self.model is not None
        target, _ = self._entries(self.model)
        ordered = self.snapshots()
        torch._foreach_copy_(target, ordered[0])
        for n, snapshot in enumerate(ordered[1:], start=2):
            torch._foreach_lerp_(target, snapshot, 1 / n)
        self._stale = False

    def evaluation_model(self) -> nn.Module | None:
        if not self.slots:
            return None
        if self._stale:
            self._average()
        return self.model

    def state_dict(self) -> dict[str, Any]:
        assert self.model is not None
        return {
            "snapshots": [[t.clone() for t in snapshot] for snapshot in self.snapshots()],
            "integers": [t.clone() for t in self._entries(self.model)[1]],
            "collected": self.collected,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.model is not None
        snapshots = state["snapshots"]
        if len(snapshots) > self.k:
            raise ValueError(f"lawa state holds {len(snapshots)} snapshots, k is {self.k}")
        device = next(iter(self.model.state_dict().values())).device
        self.slots = [[t.to(device).clone() for t in snapshot] for snapshot in snapshots]
        with torch.no_grad():
            for mine, saved in zip(self._entries(self.model)[1], state["integers"], strict=True):
                mine.copy_(saved)
        self.head = 0  # oldest first, so a full buffer overwrites slot 0 next
        self.collected = int(state["collected"])
        self._stale = bool(self.slots)


@REGULARIZERS.register(
    "swa",
    settings=SwaSettings,
    summary="stochastic weight averaging: equal-weight mean of snapshots, BN statistics recomputed",
    paper="Averaging Weights Leads to Wider Optima and Better Generalization "
    "(Izmailov et al., 2018)",
)
def build_swa(s: SwaSettings, setup: SetupContext) -> Regularizer:
    return Swa(s, setup)


@REGULARIZERS.register(
    "lawa",
    settings=LawaSettings,
    summary="latest weight averaging: uniform mean of the k latest snapshots, ν steps apart",
    paper="Early Weight Averaging meets High Learning Rates for LLM Pre-training "
    "(Sanyal et al., 2023)",
)
def build_lawa(s: LawaSettings, setup: SetupContext) -> Regularizer:
    return Lawa(s)
