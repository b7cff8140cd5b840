"""Label noise and the seeded split every classification set shares."""

from __future__ import annotations

import pytest
import torch

from trainlib.components.datasets_common import (
    ClassificationSettings,
    classification_bundle,
    noisy_labels,
    pair_flip_label_noise,
    split_indices,
    symmetric_label_noise,
)
from trainlib.data import DataInfo

LABELS = torch.arange(1000) % 7


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.6])
def test_symmetric_noise_makes_exactly_the_fraction_wrong(fraction: float) -> None:
    noisy = symmetric_label_noise(LABELS, 7, fraction, seed=3)
    assert int((noisy != LABELS).sum()) == round(1000 * fraction)
    assert noisy.min() >= 0 and noisy.max() < 7


def test_symmetric_noise_spreads_over_the_other_classes() -> None:
    labels = torch.zeros(20000, dtype=torch.long)
    noisy = symmetric_label_noise(labels, 5, 0.5, seed=0)
    counts = torch.bincount(noisy[noisy != 0], minlength=5)[1:].double()
    assert counts.sum() == 10000
    # four wrong classes, each about a quarter (binomial σ ≈ 43)
    assert (counts - 2500).abs().max() < 250


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.45])
def test_pair_flip_moves_each_picked_label_to_the_next_class(fraction: float) -> None:
    noisy = pair_flip_label_noise(LABELS, 7, fraction, seed=1)
    flipped = noisy != LABELS
    assert int(flipped.sum()) == round(1000 * fraction)
    torch.testing.assert_close(noisy[flipped], (LABELS[flipped] + 1) % 7)
    # the confusion matrix has the mass on the diagonal and the one superdiagonal (mod C) only
    confusion = torch.zeros(7, 7, dtype=torch.long)
    confusion.index_put_((LABELS, noisy), torch.ones(1000, dtype=torch.long), accumulate=True)
    off = confusion.clone()
    off[torch.arange(7), torch.arange(7)] = 0
    off[torch.arange(7), (torch.arange(7) + 1) % 7] = 0
    assert off.sum() == 0


def test_noise_is_seeded() -> None:
    a = symmetric_label_noise(LABELS, 7, 0.3, seed=5)
    assert torch.equal(a, symmetric_label_noise(LABELS, 7, 0.3, seed=5))
    assert not torch.equal(a, symmetric_label_noise(LABELS, 7, 0.3, seed=6))


def test_noisy_labels_follows_the_settings_kind() -> None:
    s = ClassificationSettings(label_noise=0.2, label_noise_kind="pair_flip")
    noisy = noisy_labels(LABELS, 7, s, seed=0)
    flipped = noisy != LABELS
    assert int(flipped.sum()) == 200
    assert torch.equal(noisy[flipped], (LABELS[flipped] + 1) % 7)
    assert noisy_labels(LABELS, 7, ClassificationSettings(), seed=0) is LABELS


def test_bundle_noises_training_labels_only_and_noise_does_not_move_the_split() -> None:
    x = torch.arange(500, dtype=torch.float32).unsqueeze(1)  # x = sample index
    y = torch.arange(500) % 4
    clean = classification_bundle(x, y, DataInfo((1,), 4), ClassificationSettings(), seed=2)
    s = ClassificationSettings(label_noise=0.4)
    noisy = classification_bundle(x, y, DataInfo((1,), 4), s, seed=2)
    assert torch.equal(clean.train_x, noisy.train_x) and torch.equal(clean.val_x, noisy.val_x)
    assert torch.equal(noisy.val_y, y[noisy.val_x.squeeze(1).long()])
    assert int((noisy.train_y != clean.train_y).sum()) == round(400 * 0.4)
    train_idx, val_idx = split_indices(500, 0.2, seed=2)
    assert torch.equal(noisy.val_x.squeeze(1).long(), val_idx)
    assert torch.equal(noisy.train_x.squeeze(1).long(), train_idx)
