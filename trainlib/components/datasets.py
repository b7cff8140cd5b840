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
    return DataBundle(
        x[train_idx], y[train_idx], x[val_idx], y[val_idx], DataInfo(shape, 10), s.batch_size
    )
