"""Mixing data methods: `mixup`, `cutmix` (soft targets) and `rank_mixup` (a ranking penalty).

Randomness: each regularizer owns a `torch.Generator` seeded from the job's seed; every step it
draws one 63-bit seed from it and makes all of that step's draws (λ, permutation, box) from a
NumPy generator with that seed (NumPy samples the Beta distribution exactly; torch's sampler takes
no generator). The torch generator's state is the regularizer's state, so a resumed run draws
the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from trainlib.data import Task
from trainlib.errors import DataError
from trainlib.registries import REGULARIZERS
from trainlib.regularizers.base import (
    PenaltyContext,
    Regularizer,
    RegularizerSettings,
    SetupContext,
)

# Mixing blends inputs and their target rows (one-hot labels, or regression values); token ids
# and per-position labels cannot be blended.
MIXABLE: frozenset[Task] = frozenset({"classification", "regression"})

# offsets keep the streams of different methods apart under the same job seed
_STREAM = {"mixup": 0x6D69, "cutmix": 0x6375, "rank_mixup": 0x726B}


class SeededDraws(Regularizer):
    """A per-regularizer torch generator whose state round-trips through state_dict."""

    def __init__(self, kind: str, seed: int, num_classes: int) -> None:
        self.generator = torch.Generator().manual_seed(seed + _STREAM[kind])
        self.num_classes = num_classes

    def step_rng(self) -> np.random.Generator:
        seed = int(torch.randint(0, 2**63 - 1, (), generator=self.generator))
        return np.random.default_rng(seed)

    def soft(self, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """One-hot rows for class indices; soft targets (from an earlier mixer) pass through."""
        if y.ndim == 2:
            return y.to(dtype)
        return F.one_hot(y, self.num_classes).to(dtype)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def beta_draw(rng: np.random.Generator, alpha: float) -> float:
    """λ ~ Beta(α, α); λ = 1 (no mixing) for α = 0, as the authors' code."""
    return float(rng.beta(alpha, alpha)) if alpha > 0 else 1.0


# --- mixup ----------------------------------------------------------------------------------------


class MixupSettings(RegularizerSettings):
    soft_targets: ClassVar[bool] = True
    tasks: ClassVar[frozenset[Task]] = MIXABLE

    alpha: float = Field(1.0, ge=0, le=100, description="λ ~ Beta(α, α); 0 turns mixing off")


class Mixup(SeededDraws):
    """x̃ = λx + (1 − λ)x[perm], ỹ = λe_y + (1 − λ)e_y[perm], one λ ~ Beta(α, α) per batch.

    Cross-entropy on ỹ equals the authors' λ·CE(y) + (1 − λ)·CE(y[perm]) exactly.
    mixup: Beyond Empirical Risk Minimization (Zhang, Cisse, Dauphin, Lopez-Paz, 2018).
    """

    def __init__(self, s: MixupSettings, setup: SetupContext) -> None:
        super().__init__("mixup", setup.seed, setup.info.num_classes)
        self.s = s
        self.last: tuple[float, torch.Tensor] | None = None  # (λ, perm) of the last batch

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.step_rng()
        lam = beta_draw(rng, self.s.alpha)
        perm = torch.from_numpy(rng.permutation(len(x))).to(x.device)
        self.last = (lam, perm)
        targets = self.soft(y, x.dtype if x.is_floating_point() else torch.float32)
        mixed_x = x * lam + x[perm] * (1 - lam)
        return mixed_x, targets * lam + targets[perm] * (1 - lam)


@REGULARIZERS.register(
    "mixup",
    settings=MixupSettings,
    summary="mixup: convex combinations of input pairs and of their one-hot labels",
    paper="mixup: Beyond Empirical Risk Minimization (Zhang et al., 2018)",
)
def build_mixup(s: MixupSettings, setup: SetupContext) -> Regularizer:
    return Mixup(s, setup)


# --- cutmix ---------------------------------------------------------------------------------------


class CutmixSettings(RegularizerSettings):
    soft_targets: ClassVar[bool] = True
    tasks: ClassVar[frozenset[Task]] = MIXABLE

    beta: float = Field(1.0, gt=0, le=100, description="λ ~ Beta(β, β)")
    prob: float = Field(
        0.5, ge=0, le=1, description="share of batches mixed (0.5 CIFAR, 1.0 ImageNet commands)"
    )


def rand_bbox(size_w: int, size_h: int, lam: float, cx: int, cy: int) -> tuple[int, int, int, int]:
    """The authors' `rand_bbox` for a given centre: (x1, y1, x2, y2), clipped to the image."""
    cut_rat = math.sqrt(1.0 - lam)
    cut_w = int(size_w * cut_rat)
    cut_h = int(size_h * cut_rat)
    x1 = min(max(cx - cut_w // 2, 0), size_w)
    y1 = min(max(cy - cut_h // 2, 0), size_h)
    x2 = min(max(cx + cut_w // 2, 0), size_w)
    y2 = min(max(cy + cut_h // 2, 0), size_h)
    return x1, y1, x2, y2


class Cutmix(SeededDraws):
    """With probability `prob`: paste a box of x[perm] into x and mix the labels by area.

    λ ~ Beta(β, β); box side ratio sqrt(1 − λ), centre uniform over the pixels, clipped at the
    borders; the label weight is recomputed from the pasted area, λ_adj = 1 − area/(W·H), and
    ỹ = λ_adj e_y + (1 − λ_adj) e_y[perm]. The two spatial axes are the input's last two (the
    authors' code calls them W and H). Batches left alone get one-hot targets. CutMix:
    Regularization Strategy to Train Strong Classifiers with Localizable Features (Yun et al.,
    2019).
    """

    def __init__(self, s: CutmixSettings, setup: SetupContext) -> None:
        super().__init__("cutmix", setup.seed, setup.info.num_classes)
        self.s = s
        self.shape = tuple(setup.info.input_shape)
        if len(self.shape) < 2:
            raise DataError(
                f"cutmix pastes image boxes: it needs inputs with two spatial dimensions, and "
                f"this data set gives samples of shape {self.shape} (for digits set "
                "data.flatten: false)"
            )
        self.last: tuple[float, torch.Tensor, tuple[int, int, int, int]] | None = None

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.step_rng()
        targets = self.soft(y, x.dtype if x.is_floating_point() else torch.float32)
        if rng.random() >= self.s.prob:
            self.last = None
            return x, targets
        lam = beta_draw(rng, self.s.beta)
        perm_np = rng.permutation(len(x))
        images = x.reshape(len(x), *self.shape)  # flat samples get their image shape back
        size_w, size_h = self.shape[-2], self.shape[-1]
        cx, cy = int(rng.integers(size_w)), int(rng.integers(size_h))
        x1, y1, x2, y2 = rand_bbox(size_w, size_h, lam, cx, cy)
        perm = torch.from_numpy(perm_np).to(x.device)
        mixed = images.clone()
        mixed[..., x1:x2, y1:y2] = images[perm][..., x1:x2, y1:y2]
        lam_adj = 1.0 - (x2 - x1) * (y2 - y1) / (size_w * size_h)
        self.last = (lam_adj, perm, (x1, y1, x2, y2))
        return mixed.reshape(x.shape), targets * lam_adj + targets[perm] * (1 - lam_adj)


@REGULARIZERS.register(
    "cutmix",
    settings=CutmixSettings,
    summary="CutMix: paste a random box from another image, mix labels by the box's area",
    paper="CutMix: Regularization Strategy to Train Strong Classifiers with Localizable "
    "Features (Yun et al., 2019)",
)
def build_cutmix(s: CutmixSettings, setup: SetupContext) -> Regularizer:
    return Cutmix(s, setup)


# --- rank_mixup -----------------------------------------------------------------------------------


class RankMixupSettings(RegularizerSettings):
    tasks: ClassVar[frozenset[Task]] = frozenset({"classification"})  # ranks class confidences
    loss: Literal["mrl", "mndcg"] = Field(
        "mrl", description="mixup ranking loss (margin on max logits) or M-NDCG"
    )
    strength: float = Field(0.1, ge=0, le=100, description="α_r, the ranking loss's weight")
    margin: float = Field(2.0, ge=0, le=100, description="MRL margin m, in logit units")
    alpha: float = Field(2.0, ge=0, le=100, description="mixup λ ~ Beta(a, a)")
    num_mixup: int | None = Field(
        None, ge=1, le=16, description="mixed copies M; None: 1 for mrl, 3 for mndcg"
    )


def mrl_loss(
    logits: torch.Tensor, mixed_logits: torch.Tensor, mixed_targets: torch.Tensor, margin: float
) -> torch.Tensor:
    """mean_i mask_i · max(0, m + max_j z̃_ij − max_j z_ij), over the M·B mixed rows.

    mask_i = 0 where the mixed target still holds a 1 (same-class partner, λ ∈ {0, 1}).
    """
    copies = len(mixed_logits) // len(logits)
    raw_max = logits.max(dim=1).values.repeat(copies)
    # the reference tests `== 1.0`; λ + (1 − λ) can miss 1 by an ulp in float32, hence the slack
    mask = ~(mixed_targets >= 1.0 - 1e-6).any(dim=1)
    diff = mixed_logits.max(dim=1).values - raw_max
    return (mask * F.relu(diff + margin)).mean()


def mndcg_loss(
    logits: torch.Tensor, mixed_logits: torch.Tensor, mixed_targets: torch.Tensor
) -> torch.Tensor:
    """mean_i (1 − nDCG_i): confidences [max p(x), max p(x̃_k)…] ranked by relevance [1, λ_k…].

    Mixed copies ordered by decreasing λ_k (the mixed target's largest entry); position k
    (1 = the raw sample) is discounted by log₂(k + 1); nDCG = DCG/IDCG, or IDCG/DCG when
    DCG ≥ IDCG (the authors' code).
    """
    batch, classes = logits.shape
    copies = len(mixed_logits) // batch
    conf = F.softmax(logits, dim=1).max(dim=1, keepdim=True).values
    mixed_conf = F.softmax(mixed_logits.reshape(copies, batch, classes), dim=2).max(2).values.t()
    lam = mixed_targets.reshape(copies, batch, classes).max(dim=2).values.t()
    order = torch.argsort(lam, dim=1, descending=True)
    discount = torch.log2(torch.arange(2, copies + 3, device=logits.device, dtype=logits.dtype))
    dcg = (torch.cat([conf, mixed_conf.gather(1, order)], 1) / discount).sum(1)
    idcg = (torch.cat([torch.ones_like(conf), lam.gather(1, order)], 1) / discount).sum(1)
    ndcg = torch.where(idcg > dcg, dcg / idcg, idcg / dcg)
    return (1.0 - ndcg).mean()


class RankMixup(SeededDraws):
    """α_r · L_rank on M mixed copies of the batch; the base loss stays CE on the raw batch.

    Each copy: λ_k ~ Beta(a, a), a permutation, x̃ = λ_k x + (1 − λ_k) x[perm] and the mixed
    one-hot target; the copies go through the model in one extra forward (train mode, as in the
    authors' `forward_multimixup`). MRL: mrl_loss (max logits, as the reference code, although
    the paper speaks of confidences); M-NDCG: mndcg_loss. Mixed samples enter only through the
    penalty, so the targets stay hard labels. RankMixup: Ranking-Based Mixup Training for Network
    Calibration (Noh, Park, Lee, Ham, 2023).
    """

    def __init__(self, s: RankMixupSettings, setup: SetupContext) -> None:
        super().__init__("rank_mixup", setup.seed, setup.info.num_classes)
        self.s = s
        self.copies = s.num_mixup or (1 if s.loss == "mrl" else 3)
        # draws are made once per step: a second pass on the same step (step strategies) reuses them
        self._drawn: tuple[int, list[tuple[float, np.ndarray]]] | None = None

    def draws(self, step: int, batch: int) -> list[tuple[float, np.ndarray]]:
        if self._drawn is None or self._drawn[0] != step:
            rng = self.step_rng()
            made = []
            for _ in range(self.copies):
                lam = beta_draw(rng, self.s.alpha)
                made.append((lam, rng.permutation(batch)))
            self._drawn = (step, made)
        return self._drawn[1]

    def penalty(self, ctx: PenaltyContext) -> torch.Tensor:
        x = ctx.x
        targets = self.soft(ctx.targets, ctx.logits.dtype)
        mixed_x, mixed_t = [], []
        for lam, perm_np in self.draws(ctx.step, len(x)):
            perm = torch.from_numpy(perm_np).to(x.device)
            mixed_x.append(x * lam + x[perm] * (1 - lam))
            mixed_t.append(targets * lam + targets[perm] * (1 - lam))
        mixed_logits = ctx.model(torch.cat(mixed_x))
        mixed_targets = torch.cat(mixed_t)
        if self.s.loss == "mrl":
            rank = mrl_loss(ctx.logits, mixed_logits, mixed_targets, self.s.margin)
        else:
            rank = mndcg_loss(ctx.logits, mixed_logits, mixed_targets)
        return self.s.strength * rank

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._drawn = None


@REGULARIZERS.register(
    "rank_mixup",
    settings=RankMixupSettings,
    summary="RankMixup: mixed samples must be ranked less confident than raw ones (MRL/M-NDCG)",
    paper="RankMixup: Ranking-Based Mixup Training for Network Calibration (Noh et al., 2023)",
)
def build_rank_mixup(s: RankMixupSettings, setup: SetupContext) -> Regularizer:
    return RankMixup(s, setup)
