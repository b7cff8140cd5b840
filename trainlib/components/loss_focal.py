"""One-vs-rest and focusing losses: `bce`, `focal`, `poly1_focal`, `asymmetric`.

One-vs-rest ("sigmoid") losses treat each of the C logits as a binary problem against the one-hot
(or soft) target and **sum over the classes, then average over the batch** — the sum divided by
the number of positive labels, as detection's focal loss normalises it. That is C times PyTorch's
`binary_cross_entropy_with_logits(reduction="mean")`, which averages over classes too.

For a soft target y_c the per-class loss is `y_c ℓ⁺(z_c) + (1 − y_c) ℓ⁻(z_c)`: the expected loss
(see `losses`); for 0/1 targets it equals the papers' `p_t` forms.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from trainlib.components.losses import LossSettings, check_inputs, expected, one_vs_rest
from trainlib.registries import LOSSES

Form = Literal["softmax", "sigmoid"]


# --- bce --------------------------------------------------------------------------------------


class BceSettings(LossSettings):
    """One-vs-rest binary cross-entropy on the class logits; no settings."""


class Bce(nn.Module):
    """`L = −Σ_c [y_c log σ(z_c) + (1 − y_c) log σ(−z_c)]`, mean over the batch.

    Equals `F.binary_cross_entropy_with_logits(z, y, reduction="sum") / batch` for one-hot or soft
    y; the γ = 0 case of the sigmoid focal loss and the γ± = m = 0 case of `asymmetric`.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target)
        return one_vs_rest(-F.logsigmoid(logits), -F.logsigmoid(-logits), target)


@LOSSES.register(
    "bce",
    settings=BceSettings,
    summary="one-vs-rest binary cross-entropy on the class logits (sum over classes)",
)
def build_bce(s: BceSettings) -> nn.Module:
    return Bce()


# --- focal and poly1_focal --------------------------------------------------------------------


class FocalSettings(LossSettings):
    """Focal loss: cross-entropy down-weighted by (1 − p_t)^γ on well-classified samples."""

    gamma: float = Field(2.0, ge=0, le=10, description="γ, the focusing exponent")
    alpha: float | None = Field(
        None,
        ge=0,
        le=1,
        description="α: sigmoid form, weight α on positives and 1 − α on negatives (the paper's "
        "detection value is 0.25); softmax form, a constant factor. None: no weighting",
    )
    form: Form = Field(
        "softmax",
        description="softmax: p_t = softmax(z)_y (multi-class); sigmoid: one-vs-rest per class",
    )


class Focal(nn.Module):
    """`FL = −α_t (1 − p_t)^γ log p_t`, mean over the batch; γ = 0 without α is CE (softmax) or
    BCE (sigmoid). Optional Poly-1 term `ε (1 − p_t)^(γ+1)` (α multiplies the focal part only).

    "Focal Loss for Dense Object Detection" (Lin, Goyal, Girshick, He, Dollár, 2017); the Poly-1
    term from "PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions"
    (Leng et al., 2022).

    - softmax: `p_t = softmax(z)_y`, `α_t = α`; soft targets: `Σ_k y_k FL(p_k)`.
    - sigmoid: per class `p = σ(z_c)`, `p_t = p` for the positive class and `1 − p` for the
      others, `α_t = α` or `1 − α` (torchvision's `sigmoid_focal_loss`); summed over classes.

    `(1 − p)` is taken as `−expm1(log p)` or `σ(−z)` so it stays exact when p → 1.
    """

    def __init__(self, gamma: float, alpha: float | None, form: Form, epsilon: float = 0.0):
        super().__init__()
        self.gamma = gamma
        self.alpha = alpha
        self.form = form
        self.epsilon = epsilon

    def _term(self, log_p: torch.Tensor, log_q: torch.Tensor, alpha: float) -> torch.Tensor:
        """`−α (1 − p)^γ log p + ε (1 − p)^(γ+1)` from log p and log(1 − p)."""
        out = -alpha * log_p if self.gamma == 0 else -alpha * torch.exp(self.gamma * log_q) * log_p
        if self.epsilon:
            out = out + self.epsilon * torch.exp((self.gamma + 1) * log_q)
        return out

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target)
        if self.form == "sigmoid":
            a_pos, a_neg = (1.0, 1.0) if self.alpha is None else (self.alpha, 1 - self.alpha)
            log_p, log_q = F.logsigmoid(logits), F.logsigmoid(-logits)
            return one_vs_rest(
                self._term(log_p, log_q, a_pos), self._term(log_q, log_p, a_neg), target
            )
        log_p = F.log_softmax(logits, dim=-1)
        # log(1 − p) = log(−expm1(log p)); where p rounds to 1 the clamp keeps it (and its
        # gradient) finite, and (1 − p)^γ is ~0 there anyway
        tiny = torch.finfo(log_p.dtype).tiny
        log_q = torch.log((-torch.expm1(log_p)).clamp(min=tiny))
        alpha = 1.0 if self.alpha is None else self.alpha
        return expected(self._term(log_p, log_q, alpha), target).mean()


@LOSSES.register(
    "focal",
    settings=FocalSettings,
    summary="focal loss −α_t (1 − p_t)^γ log p_t (softmax or one-vs-rest sigmoid)",
    paper="Focal Loss for Dense Object Detection (Lin et al., 2017)",
)
def build_focal(s: FocalSettings) -> nn.Module:
    return Focal(s.gamma, s.alpha, s.form)


class Poly1FocalSettings(FocalSettings):
    """Poly-1 focal loss: the focal loss plus ε (1 − p_t)^(γ+1)."""

    epsilon: float = Field(1.0, ge=-1, le=100, description="ε, the Poly-1 coefficient")


@LOSSES.register(
    "poly1_focal",
    settings=Poly1FocalSettings,
    summary="Poly-1 focal loss: focal + ε (1 − p_t)^(γ+1)",
    paper="PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions "
    "(Leng et al., 2022)",
)
def build_poly1_focal(s: Poly1FocalSettings) -> nn.Module:
    return Focal(s.gamma, s.alpha, s.form, s.epsilon)


# --- asymmetric -------------------------------------------------------------------------------


class AsymmetricSettings(LossSettings):
    """Asymmetric loss (ASL): separate focusing for positives and negatives, and a probability
    margin that discards easy negatives. Defaults: the authors' training script."""

    gamma_pos: float = Field(0.0, ge=0, le=10, description="γ+, focusing on positives")
    gamma_neg: float = Field(4.0, ge=0, le=10, description="γ−, focusing on negatives")
    clip: float = Field(0.05, ge=0, lt=1, description="m: negatives use p_m = max(p − m, 0)")
    detach_focal_weight: bool = Field(
        True,
        description="treat the focusing weights as constants in backprop, as the reference "
        "class does (disable_torch_grad_focal_loss=True)",
    )


class Asymmetric(nn.Module):
    """`L = −Σ_c [y (1 − p)^γ+ log p + (1 − y) p_m^γ− log(1 − p_m)]`, `p = σ(z_c)`,
    `p_m = max(p − m, 0)`; summed over classes, mean over the batch (the reference sums over the
    batch too: multiply by the batch size to compare). With γ+ = γ− = m = 0 this is `bce`; a
    negative with p ≤ m contributes exactly 0.

    "Asymmetric Loss For Multi-Label Classification" (Ridnik et al., 2021); reference
    Alibaba-MIIL/ASL `src/loss_functions/losses.py` (`AsymmetricLoss`) and `train.py`
    (γ+ = 0, γ− = 4, m = 0.05). Logs use log-sigmoid where the reference clamps p at 1e-8, so
    a positive with p < 1e-8 still gets its gradient here.
    """

    def __init__(self, gamma_pos: float, gamma_neg: float, clip: float, detach: bool) -> None:
        super().__init__()
        self.gamma_pos = gamma_pos
        self.gamma_neg = gamma_neg
        self.clip = clip
        self.detach = detach

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target)
        log_p = F.logsigmoid(logits)
        if self.clip > 0:
            # 1 − p_m = min(1 − p + m, 1) ≥ m: the log is finite without a clamp
            one_minus_pm = (torch.sigmoid(-logits) + self.clip).clamp(max=1)
            log_q = torch.log(one_minus_pm)
            p_m = 1 - one_minus_pm
        else:
            log_q = F.logsigmoid(-logits)
            p_m = torch.sigmoid(logits)
        pos, neg = -log_p, -log_q
        if self.gamma_pos:
            w = torch.exp(self.gamma_pos * F.logsigmoid(-logits))  # (1 − p)^γ+, no underflow
            pos = pos * (w.detach() if self.detach else w)
        if self.gamma_neg:
            # p_m is 0 for easy negatives: the clamp keeps pow's gradient finite for γ− < 1
            # (their loss term −log(1 − p_m) = −log 1 is exactly 0 anyway)
            w = p_m.clamp(min=torch.finfo(p_m.dtype).tiny).pow(self.gamma_neg)
            neg = neg * (w.detach() if self.detach else w)
        return one_vs_rest(pos, neg, target)


@LOSSES.register(
    "asymmetric",
    settings=AsymmetricSettings,
    summary="asymmetric loss (ASL): one-vs-rest with γ+, γ− focusing and a negative margin",
    paper="Asymmetric Loss For Multi-Label Classification (Ridnik et al., 2021)",
)
def build_asymmetric(s: AsymmetricSettings) -> nn.Module:
    return Asymmetric(s.gamma_pos, s.gamma_neg, s.clip, s.detach_focal_weight)
