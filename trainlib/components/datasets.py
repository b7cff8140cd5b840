"""Data sets that need no download: shipped with a package or generated."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from trainlib.data import DataBundle, DataInfo
from trainlib.registries import DATASETS


class DigitsSettings(BaseModel):
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), standardized."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(128, ge=1, le=65536)
    val_fraction: float = Field(0.2, gt=0, lt=1)
    flatten: bool = Field(True, description="64 features (MLP) or 1x8x8 images (CNN)")
    label_noise: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="fraction of training labels replaced by a different class drawn uniformly "
        "(symmetric noise, seeded); validation labels stay clean",
    )


def symmetric_label_noise(
    labels: torch.Tensor, num_classes: int, fraction: float, seed: int
) -> torch.Tensor:
    """Exactly round(fraction·n) labels, chosen at random, moved to another class drawn uniformly.

    The true class is never redrawn, so `fraction` is the share of wrong labels (some papers draw
    from all C classes, which leaves a 1/C share of the picked labels correct).
    """
    generator = torch.Generator().manual_seed(seed)
    n_flip = round(len(labels) * fraction)
    picked = torch.randperm(len(labels), generator=generator)[:n_flip]
    shift = torch.randint(1, num_classes, (n_flip,), generator=generator)
    noisy = labels.clone()
    noisy[picked] = (labels[picked] + shift) % num_classes
    return noisy


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded permutation split: the same seed always gives the same validation set."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(n * val_fraction))
    return perm[n_val:], perm[:n_val]


@DATASETS.register(
    "digits",
    settings=DigitsSettings,
    summary="scikit-learn's 8x8 digits, 10 classes, seeded validation split",
    paper="UCI Optical Recognition of Handwritten Digits (Alpaydin & Kaynak, 1998)",
)
def build_digits(s: DigitsSettings, seed: int) -> DataBundle:
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = torch.tensor(raw.data, dtype=torch.float32)
    y = torch.tensor(raw.target, dtype=torch.long)
    train_idx, val_idx = split_indices(len(x), s.val_fraction, seed)
    # Standardize with training statistics only, so validation stays unseen.
    mean = x[train_idx].mean(0)
    std = x[train_idx].std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))  # constant pixels: scale 1, as sklearn
    x = (x - mean) / std
    shape: tuple[int, ...] = (64,)
    if not s.flatten:
        x = x.view(-1, 1, 8, 8)
        shape = (1, 8, 8)
    train_y = y[train_idx]
    if s.label_noise > 0:
        # its own stream (offset past the split's seeds), so the split does not move with the noise
        train_y = symmetric_label_noise(train_y, 10, s.label_noise, seed + 2**32)
    return DataBundle(
        x[train_idx], train_y, x[val_idx], y[val_idx], DataInfo(shape, 10), s.batch_size
    )
