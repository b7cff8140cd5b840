"""Data sets that need no download: shipped with a package or generated.

scikit-learn's digits lives here; the generated sets are in the datasets_*.py modules beside
this one, and what they share (split, label noise) in datasets_common.py.
"""

from __future__ import annotations

import torch
from pydantic import Field

# Importing the other data-set modules registers them, so this module stays the one entry.
from trainlib.components import (  # noqa: F401
    datasets_modular,
    datasets_synthetic,
    datasets_tasks,
    datasets_text,
    datasets_upload,
)
from trainlib.components.datasets_common import (
    ClassificationSettings,
    noisy_labels,
    split_indices,
    symmetric_label_noise,
)
from trainlib.data import DataBundle, DataInfo
from trainlib.registries import DATASETS

__all__ = ["DigitsSettings", "build_digits", "split_indices", "symmetric_label_noise"]


class DigitsSettings(ClassificationSettings):
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), standardized."""

    flatten: bool = Field(True, description="64 features (MLP) or 1x8x8 images (CNN)")


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
    train_y = noisy_labels(y[train_idx], 10, s, seed)
    return DataBundle(
        x[train_idx], train_y, x[val_idx], y[val_idx], DataInfo(shape, 10), s.batch_size
    )
