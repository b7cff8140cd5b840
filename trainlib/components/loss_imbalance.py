"""Losses for class imbalance: `logit_adjusted`, `vs_loss`, `class_weighted`.

Each needs the training set's class counts n_c (or priors π_c = n_c / N). A loss is built from
its settings alone, so they come either from the settings (`class_priors` / `class_counts`) or,
when those are omitted, from a running count of the training targets the loss has seen
(`ClassCounts`, kept in the module's buffers and its `state_dict`):

- a batch is counted once, before its loss is computed, and only in training (the module in
  train mode with autograd on): the loop's evaluation runs under `no_grad` and is not counted;
- a second call with the same target tensor (the second pass of SAM, AWP, ...) is not counted
  again, so the counts are exactly the training targets seen so far (soft targets add their rows);
- a class not seen yet counts as 1, so its log-prior stays finite.

The priors π̂_c = n̂_c / N̂ then equal the training set's after each full epoch (the batch order
visits every sample once per epoch) and are noisy during the first few batches. Absolute counts
keep growing with the epochs: that matters only to the effective number of `class_weighted`
(see there); give explicit counts to reproduce a paper's numbers exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from trainlib.components.losses import LossSettings, TrainingBatches, check_inputs, expected
from trainlib.registries import LOSSES

PositiveList = list[Annotated[float, Field(gt=0)]]


class ClassCounts(nn.Module):
    """Class counts n_c: fixed from the settings, or counted online from the training targets."""

    counts: torch.Tensor

    def __init__(self, counts: Sequence[float] | None) -> None:
        super().__init__()
        self.fixed = counts is not None
        start = torch.tensor(list(counts) if counts is not None else [], dtype=torch.float64)
        # float64: integer counts stay exact up to 2^53 samples
        self.register_buffer("counts", start)
        self._batches = TrainingBatches()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The counts to use for this batch (float64, on the logits' device, all > 0)."""
        classes = logits.shape[-1]
        if self.counts.device != logits.device:
            self.counts = self.counts.to(logits.device)
        if self.fixed:
            if len(self.counts) != classes:
                raise ValueError(
                    f"{len(self.counts)} class counts or priors given, but the model has "
                    f"{classes} classes"
                )
            return self.counts
        if self._batches.is_new(self, target):
            self._count(target, classes)
        if len(self.counts) == 0:  # nothing counted yet (evaluation first): uniform
            return torch.ones(classes, dtype=torch.float64, device=logits.device)
        return self.counts.clamp(min=1)

    @torch.no_grad()
    def _count(self, target: torch.Tensor, classes: int) -> None:
        if len(self.counts) == 0:
            self.counts = torch.zeros(classes, dtype=torch.float64, device=target.device)
        if target.is_floating_point():
            self.counts += target.sum(0).to(torch.float64)
        else:
            # index_add_ needs no host sync (bincount would, for its output size)
            ones = torch.ones(target.shape, dtype=torch.float64, device=target.device)
            self.counts.index_add_(0, target, ones)

    def _load_from_state_dict(
        self,
        state_dict: Mapping[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # The counts are sized lazily (C is known at the first batch): take the saved size.
        saved = state_dict.get(prefix + "counts")
        if isinstance(saved, torch.Tensor) and saved.shape != self.counts.shape:
            self.counts = torch.zeros_like(saved, dtype=torch.float64, device=self.counts.device)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


# --- logit_adjusted ---------------------------------------------------------------------------


class LogitAdjustedSettings(LossSettings):
    """Logit-adjusted loss: cross-entropy on z + τ log π (π the training class priors)."""

    tau: float = Field(1.0, ge=0, le=10, description="τ, the adjustment's scale")
    class_priors: PositiveList | None = Field(
        None,
        min_length=2,
        description="π_c per class (normalised, so class counts work too); omitted: counted "
        "online from the training targets",
    )


class LogitAdjusted(nn.Module):
    """`ℓ = CE(z + τ log π, y)`, mean over the batch; predict with the raw logits z.

    "Long-tail learning via logit adjustment" (Menon et al., 2021); it equals the VS loss of
    orparask/VS-Loss with γ = 0. Uniform priors or τ = 0 give cross-entropy. The priors come from
    `class_priors` or from a running count of the training targets (module docstring).
    """

    def __init__(self, tau: float, priors: Sequence[float] | None) -> None:
        super().__init__()
        self.tau = tau
        self.class_counts = ClassCounts(priors)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target)
        counts = self.class_counts(logits, target)
        log_prior = torch.log(counts / counts.sum()).to(logits.dtype)
        return F.cross_entropy(logits + self.tau * log_prior, target)


@LOSSES.register(
    "logit_adjusted",
    settings=LogitAdjustedSettings,
    summary="logit-adjusted cross-entropy CE(z + τ log π, y) for long-tailed classes",
    paper="Long-tail learning via logit adjustment (Menon et al., 2021)",
)
def build_logit_adjusted(s: LogitAdjustedSettings) -> nn.Module:
    return LogitAdjusted(s.tau, s.class_priors)


# --- vs_loss ----------------------------------------------------------------------------------


class VsLossSettings(LossSettings):
    """Vector-scaling loss: multiplicative (Δ) and additive (ι) logit adjustments per class."""

    gamma: float = Field(0.3, ge=0, le=2, description="γ in Δ_c = (n_c / n_max)^γ")
    tau: float = Field(1.0, ge=0, le=10, description="τ in ι_c = τ log π_c")
    class_counts: PositiveList | None = Field(
        None, min_length=2, description="n_c per class; omitted: counted online"
    )


class VsLoss(nn.Module):
    """`ℓ = CE(Δ ⊙ z + ι, y)`, `Δ_c = (n_c / n_max)^γ`, `ι_c = τ log π_c`, mean over the batch.

    "Label-Imbalanced and Group-Sensitive Classification under Overparameterization" (Kini,
    Paraskevas, Oymak, Thrampoulidis, 2021); reference orparask/VS-Loss
    `class_imbalance/losses.py` (`VSLoss`, γ = 0.3, τ = 1). γ = 0 is the logit-adjusted loss,
    τ = 0 is CDT. Deferred re-weighting (DRW), often combined with it, is not part of this loss.
    """

    def __init__(self, gamma: float, tau: float, counts: Sequence[float] | None) -> None:
        super().__init__()
        self.gamma = gamma
        self.tau = tau
        self.class_counts = ClassCounts(counts)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target)
        counts = self.class_counts(logits, target)
        delta = (counts / counts.max()).pow(self.gamma).to(logits.dtype)
        iota = (self.tau * torch.log(counts / counts.sum())).to(logits.dtype)
        return F.cross_entropy(logits * delta + iota, target)


@LOSSES.register(
    "vs_loss",
    settings=VsLossSettings,
    summary="vector-scaling loss CE(Δ ⊙ z + ι, y) for class imbalance",
    paper="Label-Imbalanced and Group-Sensitive Classification under Overparameterization "
    "(Kini et al., 2021)",
)
def build_vs_loss(s: VsLossSettings) -> nn.Module:
    return VsLoss(s.gamma, s.tau, s.class_counts)


# --- class_weighted ---------------------------------------------------------------------------

Scheme = Literal["effective_number", "inverse_frequency"]


class ClassWeightedSettings(LossSettings):
    """Class-weighted cross-entropy: weights from the effective number of samples, or 1/n_c."""

    scheme: Scheme = Field(
        "effective_number",
        description="effective_number: w_c ∝ (1 − β) / (1 − β^n_c); inverse_frequency: w_c ∝ 1/n_c",
    )
    beta: float = Field(0.9999, ge=0, lt=1, description="β of the effective number")
    class_counts: PositiveList | None = Field(
        None, min_length=2, description="n_c per class; omitted: counted online"
    )


def class_weights(counts: torch.Tensor, scheme: Scheme, beta: float) -> torch.Tensor:
    """Per-class weights normalised so that they sum to C."""
    if scheme == "inverse_frequency":
        raw = 1 / counts
    elif beta == 0:
        raw = torch.ones_like(counts)
    else:
        # 1 − β^n as −expm1(n log β): exact when β is close to 1
        raw = (1 - beta) / -torch.expm1(counts * torch.log(torch.tensor(beta, dtype=counts.dtype)))
    return raw * (len(counts) / raw.sum())


class ClassWeighted(nn.Module):
    """`ℓ = (1/B) Σ_i w_{y_i} CE(z_i, y_i)`, `w_c = (1 − β) / (1 − β^{n_c})` normalised to sum
    to C (β = 0: all ones; β → 1: ∝ 1/n_c, the `inverse_frequency` scheme).

    "Class-Balanced Loss Based on Effective Number of Samples" (Cui, Jia, Lin, Song, Belongie,
    2019); reference richardaecn/class-balanced-loss (softmax loss, β = 0.9999 on CIFAR-LT).
    Divides by the batch size as the authors do, not by Σ_i w_{y_i} as
    `F.cross_entropy(weight=w)` does. Soft targets: `Σ_k y_k w_k CE_k`.

    With counts estimated online, n_c grows with the epochs (n_c after one epoch, 2 n_c after
    two, ...): the effective number saturates at 1 / (1 − β), so for n_c well above that the
    weights drift towards uniform as training goes on. Give `class_counts` to use the training
    set's counts; `inverse_frequency` depends only on the proportions and does not drift.
    """

    def __init__(self, scheme: Scheme, beta: float, counts: Sequence[float] | None) -> None:
        super().__init__()
        self.scheme: Scheme = scheme
        self.beta = beta
        self.class_counts = ClassCounts(counts)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target)
        counts = self.class_counts(logits, target)
        weights = class_weights(counts, self.scheme, self.beta).to(logits.dtype)
        per_class = -F.log_softmax(logits, dim=-1) * weights
        return expected(per_class, target).mean()


@LOSSES.register(
    "class_weighted",
    settings=ClassWeightedSettings,
    summary="class-weighted cross-entropy (effective number of samples, or inverse frequency)",
    paper="Class-Balanced Loss Based on Effective Number of Samples (Cui et al., 2019)",
)
def build_class_weighted(s: ClassWeightedSettings) -> nn.Module:
    return ClassWeighted(s.scheme, s.beta, s.class_counts)
