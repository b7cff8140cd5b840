"""Generated data sets: Gaussian blobs, interleaved spirals and a random teacher network."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator

from trainlib.components.datasets_common import (
    SAMPLE_STREAM,
    TARGET_NOISE_STREAM,
    TEACHER_STREAM,
    ClassificationSettings,
    classification_bundle,
    split_indices,
    stream,
)
from trainlib.data import DataBundle, DataInfo, Task
from trainlib.registries import DATASETS


def _balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """0, 1, ..., C-1, 0, 1, ...: class sizes differ by at most one."""
    return torch.arange(n) % num_classes


# --- blobs ------------------------------------------------------------------------------------


class BlobsSettings(ClassificationSettings):
    """Isotropic Gaussian clusters, one per class (scikit-learn's make_blobs, drawn with torch)."""

    n_samples: int = Field(1000, ge=2, le=1_000_000)
    num_classes: int = Field(3, ge=2, le=1000)
    n_features: int = Field(2, ge=1, le=4096)
    cluster_std: float = Field(1.0, ge=0, le=1e3, description="σ of each cluster")
    center_box: float = Field(10.0, gt=0, le=1e4, description="centres uniform in [-b, b]^d")


@DATASETS.register(
    "blobs",
    settings=BlobsSettings,
    summary="Gaussian clusters, one per class (make_blobs)",
    paper="scikit-learn's sklearn.datasets.make_blobs (Pedregosa et al., 2011)",
)
def build_blobs(s: BlobsSettings, seed: int) -> DataBundle:
    g = stream(seed, SAMPLE_STREAM)
    centers = (torch.rand(s.num_classes, s.n_features, generator=g) * 2 - 1) * s.center_box
    y = _balanced_labels(s.n_samples, s.num_classes)
    x = centers[y] + s.cluster_std * torch.randn(s.n_samples, s.n_features, generator=g)
    return classification_bundle(x, y, DataInfo((s.n_features,), s.num_classes), s, seed)


# --- spirals ----------------------------------------------------------------------------------


class SpiralsSettings(ClassificationSettings):
    """C interleaved spiral arms in the plane, one per class."""

    n_samples: int = Field(1000, ge=2, le=1_000_000)
    num_classes: int = Field(2, ge=2, le=100)
    turns: float = Field(1.0, gt=0, le=20, description="turns of each arm from centre to rim")
    noise: float = Field(0.05, ge=0, le=10, description="σ of Gaussian noise on each coordinate")


def spiral_points(
    y: torch.Tensor, num_classes: int, turns: float, generator: torch.Generator
) -> torch.Tensor:
    """Noise-free points: radius r ~ U(0, 1], angle 2π(turns·r + c/C) for class c."""
    r = 1 - torch.rand(len(y), generator=generator)  # (0, 1]
    theta = 2 * math.pi * (turns * r + y / num_classes)
    return torch.stack([r * torch.cos(theta), r * torch.sin(theta)], dim=1)


@DATASETS.register(
    "spirals",
    settings=SpiralsSettings,
    summary="interleaved 2-D spiral arms, one per class",
    paper="Learning to Tell Two Spirals Apart (Lang & Witbrock, 1988)",
)
def build_spirals(s: SpiralsSettings, seed: int) -> DataBundle:
    g = stream(seed, SAMPLE_STREAM)
    y = _balanced_labels(s.n_samples, s.num_classes)
    x = spiral_points(y, s.num_classes, s.turns, g)
    x = x + s.noise * torch.randn(x.shape, generator=g)
    return classification_bundle(x, y, DataInfo((2,), s.num_classes), s, seed)


# --- teacher_student --------------------------------------------------------------------------


class TeacherStudentSettings(ClassificationSettings):
    """Gaussian inputs labelled by a random, fixed teacher network (regression or argmax class)."""

    task: Literal["regression", "classification"] = "regression"
    n_samples: int = Field(2000, ge=2, le=1_000_000)
    input_dim: int = Field(16, ge=1, le=4096)
    teacher_hidden: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [32], max_length=8, description="teacher's hidden widths"
    )
    teacher_activation: Literal["relu", "tanh"] = "tanh"
    num_outputs: int | None = Field(
        None, ge=1, le=1000, description="targets (regression, default 1) or classes (default 10)"
    )
    teacher_seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="fixes the teacher across job seeds; None: job seed"
    )
    output_noise: float = Field(
        0.0,
        ge=0,
        le=1e3,
        description="σ of Gaussian noise on the teacher's training outputs (before the argmax "
        "for classification); validation stays clean",
    )

    @model_validator(mode="after")
    def _noise_fits_task(self) -> TeacherStudentSettings:
        if self.task == "regression" and self.label_noise > 0:
            raise ValueError("label_noise is for classification; use output_noise for regression")
        if self.task == "classification" and self.num_outputs == 1:
            raise ValueError("classification needs num_outputs >= 2")
        return self

    def known_task(self) -> Task | None:
        return self.task

    @property
    def outputs(self) -> int:
        if self.num_outputs is not None:
            return self.num_outputs
        return 1 if self.task == "regression" else 10


def teacher_forward(
    x: torch.Tensor, widths: list[int], activation: str, generator: torch.Generator
) -> torch.Tensor:
    """A random MLP with N(0, 1/fan_in) weights and no biases, so every layer keeps unit scale."""
    act = torch.tanh if activation == "tanh" else torch.relu
    h = x
    for i, width in enumerate(widths):
        w = torch.randn(h.shape[1], width, generator=generator) / math.sqrt(h.shape[1])
        h = h @ w
        if i < len(widths) - 1:
            h = act(h)
    return h


@DATASETS.register(
    "teacher_student",
    settings=TeacherStudentSettings,
    summary="Gaussian inputs labelled by a random teacher MLP; regression or classification",
    paper="Statistical mechanics of learning from examples (Seung, Sompolinsky & Tishby, 1992)",
)
def build_teacher_student(s: TeacherStudentSettings, seed: int) -> DataBundle:
    x = torch.randn(s.n_samples, s.input_dim, generator=stream(seed, SAMPLE_STREAM))
    teacher_seed = seed if s.teacher_seed is None else s.teacher_seed
    widths = [*s.teacher_hidden, s.outputs]
    clean = teacher_forward(x, widths, s.teacher_activation, stream(teacher_seed, TEACHER_STREAM))
    train_idx, val_idx = split_indices(s.n_samples, s.val_fraction, seed)
    noise = torch.randn(len(train_idx), s.outputs, generator=stream(seed, TARGET_NOISE_STREAM))
    noisy_train = clean[train_idx] + s.output_noise * noise
    if s.task == "regression":
        info = DataInfo((s.input_dim,), s.outputs, task="regression")
        return DataBundle(x[train_idx], noisy_train, x[val_idx], clean[val_idx], info, s.batch_size)
    # Classification: the noisy training logits' argmax, then the label noise of every set.
    y = clean.argmax(-1)
    y[train_idx] = noisy_train.argmax(-1)
    return classification_bundle(x, y, DataInfo((s.input_dim,), s.outputs), s, seed)
