"""Noise-robust and square losses: `gce`, `mae`, `mse`, `huber`.

`gce` and `mae` act on the softmax probabilities; `mse` and `huber` regress the raw logits onto
the one-hot target (the square loss of "Evaluation of Neural Architectures Trained with Square
Loss vs Cross-Entropy in Classification Tasks", Hui & Belkin, 2021, and of the grokking
papers). All average over the batch; soft targets give the expected loss (see `losses`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator
from torch import nn

from trainlib.components.losses import (
    LossSettings,
    TrainingBatches,
    check_inputs,
    expected,
    one_vs_rest,
)
from trainlib.registries import LOSSES

# --- gce --------------------------------------------------------------------------------------


class GceSettings(LossSettings):
    """Generalized cross-entropy L_q, optionally truncated at p_y = k."""

    q: float = Field(0.7, gt=0, le=1, description="q; q → 0 is cross-entropy, q = 1 is MAE / 2")
    k: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="truncated L_q: samples with p_y ≤ k get the constant L_q(k) (the paper "
        "uses k = 0.5); None: plain L_q",
    )
    truncate_after: int | None = Field(
        None,
        ge=0,
        le=100_000_000,
        validate_default=True,
        description="with k: training batches of plain L_q before the truncation starts (the "
        "paper starts at the first LR milestone, 40 epochs on CIFAR-10)",
    )

    @field_validator("truncate_after")
    @classmethod
    def _with_k(cls, value: int | None, info: ValidationInfo) -> int | None:
        if "k" not in info.data:  # k itself is invalid: that error is enough
            return value
        k = info.data["k"]
        if k is not None and value is None:
            # at initialisation p_y ≈ 1/C ≤ k for every sample: truncating at once trains nothing
            raise ValueError(
                "truncated L_q (k) needs truncate_after: the number of training batches of plain "
                "L_q first; from the start every p_y is below k and nothing would train"
            )
        if k is None and value is not None:
            raise ValueError("truncate_after applies only to the truncated loss: set k too")
        return value


class Gce(nn.Module):
    """`L_q = (1 − p_y^q) / q`, mean over the batch; truncated: `L_q(p_y)` if `p_y > k` else the
    constant `L_q(k)` (no gradient from those samples). Gradient w.r.t. the logits:
    `−p_y^q (e_y − p)`.

    "Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy Labels" (Zhang &
    Sabuncu, 2018). The paper optimises the truncated loss by alternating steps with per-sample
    0/1 weights, all 1 until the first LR milestone, then refreshed every few epochs
    (AlanChou/Truncated-Loss). A loss does not see sample indices, so here plain L_q runs for
    `truncate_after` training batches, then the truncation applies to each batch's current p_y:
    the same objective, optimised jointly. The loss is not shifted by `L_q(k)` (a constant).
    The training batches seen are part of the module's `state_dict`.
    """

    def __init__(self, q: float, k: float | None, truncate_after: int | None) -> None:
        super().__init__()
        self.q = q
        self.k = k
        self.truncate_after = truncate_after or 0
        self.batches_seen = 0  # a host-side count: deciding to truncate needs no device sync
        self._batches = TrainingBatches()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target)
        log_p = F.log_softmax(logits, dim=-1)
        per_class = (1 - torch.exp(self.q * log_p)) / self.q  # p^q as exp(q log p)
        if self.k is not None:
            if self._batches.is_new(self, target):
                self.batches_seen += 1
            if self.batches_seen > self.truncate_after:
                floor = (1 - self.k**self.q) / self.q
                per_class = torch.where(log_p > math.log(self.k), per_class, floor)
        return expected(per_class, target).mean()

    def get_extra_state(self) -> dict[str, int]:
        return {"batches_seen": self.batches_seen}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.batches_seen = int(state["batches_seen"])


@LOSSES.register(
    "gce",
    settings=GceSettings,
    summary="generalized cross-entropy (1 − p_y^q) / q, optionally truncated",
    paper="Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy Labels "
    "(Zhang & Sabuncu, 2018)",
)
def build_gce(s: GceSettings) -> nn.Module:
    return Gce(s.q, s.k, s.truncate_after)


# --- mae --------------------------------------------------------------------------------------


class MaeSettings(LossSettings):
    """Mean absolute error between softmax(z) and the one-hot target; no settings."""


class Mae(nn.Module):
    """`MAE = ‖e_y − softmax(z)‖₁ = 2 (1 − p_y)`, mean over the batch; `Σ_c MAE(z, c) = 2(C − 1)`
    for any z (symmetric, hence robust to uniform label noise). Equals `2 · gce(q = 1)`.

    "Robust Loss Functions under Label Noise for Deep Neural Networks" (Ghosh, Kumar, Sastry,
    2017). Its gradient `−2 p_y (e_y − p)` vanishes when p_y is small: slow to fit.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target)
        return (2 * (1 - expected(F.softmax(logits, dim=-1), target))).mean()


@LOSSES.register(
    "mae",
    settings=MaeSettings,
    summary="mean absolute error ‖e_y − softmax(z)‖₁ = 2 (1 − p_y), robust to label noise",
    paper="Robust Loss Functions under Label Noise for Deep Neural Networks "
    "(Ghosh, Kumar, Sastry, 2017)",
)
def build_mae(s: MaeSettings) -> nn.Module:
    return Mae()


# --- mse and huber ----------------------------------------------------------------------------


class MseSettings(LossSettings):
    """Square loss between the logits and the one-hot target; no settings."""


class Mse(nn.Module):
    """`L = (1/C) ‖z − e_y‖²`, mean over the batch: `F.mse_loss(z, one_hot(y))`.

    "Evaluation of Neural Architectures Trained with Square Loss vs Cross-Entropy in
    Classification Tasks" (Hui & Belkin, 2021), without their rescaling for many classes.
    Soft targets give the expected loss `(1/C) Σ_c [z_c² − 2 y_c z_c + y_c]`: the same gradient
    as `F.mse_loss(z, y)`, larger by the constant `(1/C) Σ_c y_c (1 − y_c)`.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target)
        # per class: (z − 1)² at the label, z² elsewhere
        return one_vs_rest((logits - 1).square(), logits.square(), target) / logits.shape[-1]


@LOSSES.register(
    "mse",
    settings=MseSettings,
    summary="square loss of the logits against the one-hot target",
    paper="Evaluation of Neural Architectures Trained with Square Loss vs Cross-Entropy in "
    "Classification Tasks (Hui & Belkin, 2021)",
)
def build_mse(s: MseSettings) -> nn.Module:
    return Mse()


class HuberSettings(LossSettings):
    """Huber loss between the logits and the one-hot target."""

    delta: float = Field(1.0, gt=0, le=1e6, description="δ: quadratic within δ, linear beyond")


class Huber(nn.Module):
    """`L = (1/C) Σ_c H_δ(z_c − e_y,c)`, `H_δ(r) = r²/2` for |r| ≤ δ, else `δ (|r| − δ/2)`; mean
    over the batch: `F.huber_loss(z, one_hot(y), delta=δ)`.

    "Robust Estimation of a Location Parameter" (Huber, 1964). Soft targets give the expected
    loss `(1/C) Σ_c [y_c H_δ(z_c − 1) + (1 − y_c) H_δ(z_c)]`.
    """

    def __init__(self, delta: float) -> None:
        super().__init__()
        self.delta = delta

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target)
        zeros = torch.zeros_like(logits)
        pos = F.huber_loss(logits, zeros + 1, reduction="none", delta=self.delta)
        neg = F.huber_loss(logits, zeros, reduction="none", delta=self.delta)
        return one_vs_rest(pos, neg, target) / logits.shape[-1]


@LOSSES.register(
    "huber",
    settings=HuberSettings,
    summary="Huber loss of the logits against the one-hot target",
    paper="Robust Estimation of a Location Parameter (Huber, 1964)",
)
def build_huber(s: HuberSettings) -> nn.Module:
    return Huber(s.delta)
