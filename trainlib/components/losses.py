"""Losses on class logits, and the conventions every loss of the package follows.

Every loss is an `nn.Module` called as `loss(logits, target)`: logits of shape (batch, classes),
target either class indices (integers, shape (batch,)) or soft targets (floats, shape
(batch, classes), rows summing to 1, as mixup, cutmix or label smoothing produce). It returns the
mean over the batch of a per-sample loss (the loop's validation loss relies on that).

Soft targets give the *expected* hard-label loss, `Σ_k y_k ℓ(z, k)`. For cross-entropy that is the
usual soft cross-entropy; for mixup it equals the authors' `λ ℓ(z, y_a) + (1 − λ) ℓ(z, y_b)` for
every loss, whatever its form. Rows are not checked to sum to 1 (that would cost a device sync).

This module holds the softmax family: `cross_entropy`, `poly1`, `squentropy`, `stablemax`. The
others live in `loss_focal` (one-vs-rest and focusing losses), `loss_imbalance` (class priors)
and `loss_robust` (noise-robust and square losses).
"""

from __future__ import annotations

import weakref
from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainlib.registries import LOSSES


class LossSettings(BaseModel):
    """Base of every loss's settings. ClassVars describe what the spec validator checks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: accepts soft targets (rows of class probabilities); the spec rejects soft-target
    #: regularizers (mixup, cutmix, ...) with a loss that sets this to False
    soft_targets: ClassVar[bool] = True


def check_inputs(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The target, validated against the logits; soft targets cast to the logits' dtype."""
    if logits.ndim != 2:
        raise ValueError(f"expected logits of shape (batch, classes), got {tuple(logits.shape)}")
    if target.is_floating_point():
        if target.shape != logits.shape:
            raise ValueError(
                f"soft targets must have the logits' shape {tuple(logits.shape)}, "
                f"got {tuple(target.shape)}"
            )
        return target.to(logits.dtype)
    if target.shape != logits.shape[:1]:
        raise ValueError(
            f"class-index targets must have shape ({logits.shape[0]},), got {tuple(target.shape)}"
        )
    return target


def expected(values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per sample, `Σ_k y_k values_k`: the value at the label, or its mean under a soft target."""
    if target.is_floating_point():
        return (values * target).sum(-1)
    return values.gather(-1, target.unsqueeze(-1)).squeeze(-1)


class TrainingBatches:
    """Tells a new training batch apart from evaluation and from another pass over the same one.

    A batch counts when the loss is in train mode with autograd on (the loop evaluates under
    `no_grad`) and its target is not the tensor of the previous call: step strategies (SAM, AWP)
    call the loss again with the same target for their second pass.
    """

    def __init__(self) -> None:
        self._last: weakref.ref[torch.Tensor] | None = None

    def is_new(self, module: nn.Module, target: torch.Tensor) -> bool:
        if not (module.training and torch.is_grad_enabled()):
            return False
        if self._last is not None and self._last() is target:
            return False
        self._last = weakref.ref(target)
        return True


def one_vs_rest(pos: torch.Tensor, neg: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of `Σ_c [y_c pos_c + (1 − y_c) neg_c]`, per-class losses for a
    positive and a negative label (no one-hot is built)."""
    return (neg.sum(-1) + expected(pos - neg, target)).mean()


# --- cross_entropy ----------------------------------------------------------------------------


class CrossEntropySettings(LossSettings):
    """Cross-entropy; label smoothing mixes the target with the uniform distribution."""

    label_smoothing: float = Field(0.0, ge=0, lt=1, description="ε: target (1 − ε) y + ε / C")


class CrossEntropy(nn.Module):
    """`−Σ_k y_k log softmax(z)_k`, mean over the batch; y one-hot or soft, then smoothed.

    "Rethinking the Inception Architecture for Computer Vision" (Szegedy et al., 2016) for
    label smoothing: the target becomes `(1 − ε) y + ε / C`, soft targets included.
    """

    def __init__(self, label_smoothing: float) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.is_floating_point():
            target = target.to(logits.dtype)  # F.cross_entropy wants matching dtypes
        return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)


@LOSSES.register(
    "cross_entropy",
    settings=CrossEntropySettings,
    summary="cross-entropy with optional label smoothing; takes soft targets",
    paper="Rethinking the Inception Architecture for Computer Vision (Szegedy et al., 2016)",
)
def build_cross_entropy(s: CrossEntropySettings) -> nn.Module:
    return CrossEntropy(s.label_smoothing)


# --- poly1 ------------------------------------------------------------------------------------


class Poly1Settings(LossSettings):
    """Poly-1: cross-entropy plus ε times the first polynomial term (1 − p_t)."""

    epsilon: float = Field(
        1.0, ge=-1, le=100, description="ε; ε ≥ −1 keeps the loss decreasing in p_t"
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="smooths y in both terms")


class Poly1(nn.Module):
    """`L = CE + ε (1 − p_t)`, `p_t = Σ_k y_k softmax(z)_k`; ε = 0 is cross-entropy.

    "PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions" (Leng et al.,
    2022), the appendix snippet: with label smoothing both terms use the smoothed target. The
    extra gradient on the target logit is `−ε p_t (1 − p_t)`.
    """

    def __init__(self, epsilon: float, label_smoothing: float) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target)
        logp = F.log_softmax(logits, dim=-1)
        # Σ_k y_k [−log p_k + ε (1 − p_k)] is CE + ε (1 − p_t), because Σ_k y_k = 1
        per_class = -logp - self.epsilon * torch.expm1(logp)
        loss = expected(per_class, target)
        if self.label_smoothing:
            ls = self.label_smoothing
            loss = (1 - ls) * loss + ls * per_class.mean(-1)
        return loss.mean()


@LOSSES.register(
    "poly1",
    settings=Poly1Settings,
    summary="Poly-1: cross-entropy + ε (1 − p_t)",
    paper="PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions "
    "(Leng et al., 2022)",
)
def build_poly1(s: Poly1Settings) -> nn.Module:
    return Poly1(s.epsilon, s.label_smoothing)


# --- squentropy -------------------------------------------------------------------------------


class SquentropySettings(LossSettings):
    """Squentropy has no hyperparameters (use cross-entropy's training settings)."""


class Squentropy(nn.Module):
    """`L = −log softmax(z)_y + (1 / (C − 1)) Σ_{j≠y} z_j²`: CE plus the mean square of the
    incorrect classes' logits (target 0), mean over the batch.

    "Cut your Losses with Squentropy" (Hui, Belkin, Wright, 2023). Soft targets (the expectation
    over y): `CE(z, y) + (1 / (C − 1)) Σ_j (1 − y_j) z_j²`.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target)
        classes = logits.shape[-1]
        if classes < 2:
            raise ValueError("squentropy needs at least 2 classes")
        logp = F.log_softmax(logits, dim=-1)
        square = logits.square()
        # Σ_{j≠y} z_j² = Σ_j z_j² − z_y²; expected() takes the label's term (or its mean)
        per_class = -logp + (square.sum(-1, keepdim=True) - square) / (classes - 1)
        return expected(per_class, target).mean()


@LOSSES.register(
    "squentropy",
    settings=SquentropySettings,
    summary="cross-entropy + mean square of the incorrect classes' logits",
    paper="Cut your Losses with Squentropy (Hui, Belkin, Wright, 2023)",
)
def build_squentropy(s: SquentropySettings) -> nn.Module:
    return Squentropy()


# --- stablemax --------------------------------------------------------------------------------


class StablemaxSettings(LossSettings):
    """Stablemax cross-entropy: softmax's exp replaced by a function that grows linearly."""

    float64: bool = Field(
        True,
        description="compute in float64 as the authors' code does (result in the logits' dtype)",
    )


def log_stablemax(logits: torch.Tensor) -> torch.Tensor:
    """`log s(z_i) − log Σ_j s(z_j)`, `s(x) = x + 1` (x ≥ 0), `1 / (1 − x)` (x < 0)."""
    # Each branch sees only its own half-line: a `where` over 1/(1 − x) at large positive x
    # would produce a huge unused gradient that can overflow to NaN in float32.
    log_pos = torch.log1p(logits.clamp(min=0))
    log_neg = -torch.log1p(-logits.clamp(max=0))
    log_s = torch.where(logits >= 0, log_pos, log_neg)
    return log_s - torch.logsumexp(log_s, dim=-1, keepdim=True)


class Stablemax(nn.Module):
    """`L = −Σ_k y_k log StableMax(z)_k`, `StableMax(z)_i = s(z_i) / Σ_j s(z_j)`, mean over the
    batch; `s(x) = x + 1` for x ≥ 0 and `1 / (1 − x)` for x < 0 (s(0) = 1, slope 1 at 0,
    `s(x) s(−x) = 1`). Not shift-invariant, unlike softmax.

    "Grokking at the Edge of Numerical Stability" (Prieto, Barsbey, Mediano, Birdal, 2025).
    The authors' code casts the logits to float64 (`float64: true`, the default).
    """

    def __init__(self, float64: bool) -> None:
        super().__init__()
        self.float64 = float64

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target)
        z = logits.double() if self.float64 else logits
        if target.is_floating_point():
            target = target.to(z.dtype)
        loss = -expected(log_stablemax(z), target).mean()
        return loss.to(logits.dtype)


@LOSSES.register(
    "stablemax",
    settings=StablemaxSettings,
    summary="stablemax cross-entropy (s(x) = x + 1 or 1/(1 − x) instead of exp)",
    paper="Grokking at the Edge of Numerical Stability (Prieto et al., 2025)",
)
def build_stablemax(s: StablemaxSettings) -> nn.Module:
    return Stablemax(s.float64)
