"""What every data set shares: the batch size, the seeded validation split and label noise."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from trainlib.data import DataBundle, DataInfo, Task

# Each random stream of a data set has its own seed, `seed + k·2³²` for stream k (job seeds are
# below 2³²), so changing one setting (the noise, say) never moves another (the split), and no
# stream of one job seed is another stream of a neighbouring seed.
SPLIT_STREAM = 0
NOISE_STREAM = 1
SAMPLE_STREAM = 2
TEACHER_STREAM = 3
TARGET_NOISE_STREAM = 4
TASK_STREAM = 5
CORRUPTION_STREAM = 6


def stream(seed: int, k: int) -> torch.Generator:
    """The generator of random stream `k` of a data set built with `seed`."""
    return torch.Generator().manual_seed(seed + k * 2**32)


class DataSettings(BaseModel):
    """Settings of every data set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(128, ge=1, le=65536)

    def known_task(self) -> Task | None:
        """The task this data gives, where its settings tell (checked at submission); None
        when only the data itself tells (an upload), checked when the job starts."""
        return "classification"


class LabelNoiseSettings(DataSettings):
    """Label noise on the training split, which every classification set takes."""

    label_noise: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="fraction of training labels made wrong (seeded); validation stays clean",
    )
    label_noise_kind: Literal["symmetric", "pair_flip"] = Field(
        "symmetric",
        description="symmetric: another class drawn uniformly; pair_flip: class c becomes c+1 "
        "mod C (Co-teaching, Han et al. 2018)",
    )


class ClassificationSettings(LabelNoiseSettings):
    """Settings of most classification sets: label noise and a seeded validation split."""

    val_fraction: float = Field(0.2, gt=0, lt=1, description="share held out for validation")


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded permutation split: the same seed always gives the same validation set."""
    perm = torch.randperm(n, generator=stream(seed, SPLIT_STREAM))
    n_val = max(1, round(n * val_fraction))
    return perm[n_val:], perm[:n_val]


def _picked(n: int, fraction: float, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=generator)[: round(n * fraction)]


def symmetric_label_noise(
    labels: torch.Tensor, num_classes: int, fraction: float, seed: int
) -> torch.Tensor:
    """Exactly round(fraction·n) labels, chosen at random, moved to another class drawn uniformly.

    The true class is never redrawn, so `fraction` is the share of wrong labels (some papers draw
    from all C classes, which leaves a 1/C share of the picked labels correct).
    """
    generator = torch.Generator().manual_seed(seed)
    picked = _picked(len(labels), fraction, generator)
    shift = torch.randint(1, num_classes, (len(picked),), generator=generator)
    noisy = labels.clone()
    noisy[picked] = (labels[picked] + shift) % num_classes
    return noisy


def pair_flip_label_noise(
    labels: torch.Tensor, num_classes: int, fraction: float, seed: int
) -> torch.Tensor:
    """Exactly round(fraction·n) labels, chosen at random, moved from class c to c+1 mod C.

    "Co-teaching: Robust Training of Deep Neural Networks with Extremely Noisy Labels" (Han et
    al., 2018), pair flipping: each class is confused with one fixed neighbour. The paper flips
    each label with probability ε; an exact count keeps the noise rate the one asked for.
    """
    picked = _picked(len(labels), fraction, torch.Generator().manual_seed(seed))
    noisy = labels.clone()
    noisy[picked] = (labels[picked] + 1) % num_classes
    return noisy


def noisy_labels(
    labels: torch.Tensor, num_classes: int, s: LabelNoiseSettings, seed: int
) -> torch.Tensor:
    """The training labels with the settings' noise, drawn from its own stream of `seed`."""
    if s.label_noise == 0:
        return labels
    noise = symmetric_label_noise if s.label_noise_kind == "symmetric" else pair_flip_label_noise
    return noise(labels, num_classes, s.label_noise, seed + NOISE_STREAM * 2**32)


def classification_bundle(
    x: torch.Tensor,
    y: torch.Tensor,
    info: DataInfo,
    s: ClassificationSettings,
    seed: int,
) -> DataBundle:
    """Split (x, y) by `val_fraction` and add label noise to the training labels only."""
    train_idx, val_idx = split_indices(len(x), s.val_fraction, seed)
    train_y = noisy_labels(y[train_idx], info.num_classes, s, seed)
    return DataBundle(x[train_idx], train_y, x[val_idx], y[val_idx], info, s.batch_size)
