"""blobs, spirals and teacher_student against their generating formulas."""

from __future__ import annotations

import math

import pytest
import torch

from trainlib.data import DataBundle
from trainlib.registries import DATASETS
from trainlib.spec import SpecError, parse_spec


def _all(data: DataBundle) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([data.train_x, data.val_x]), torch.cat([data.train_y, data.val_y])


def test_blobs_are_gaussian_clusters_around_one_centre_per_class() -> None:
    spec = {"name": "blobs", "n_samples": 3000, "num_classes": 3, "n_features": 4}
    x, y = _all(DATASETS.build({**spec, "cluster_std": 0.5}, seed=0))
    assert torch.bincount(y).tolist() == [1000, 1000, 1000]
    for c in range(3):
        points = x[y == c]
        assert points.mean(0).abs().max() <= 10.5  # centres inside the box
        # per-coordinate std ≈ σ = 0.5 (1000 samples: relative error ~2%)
        torch.testing.assert_close(points.std(0), torch.full((4,), 0.5), atol=0.05, rtol=0)


def test_spirals_without_noise_lie_on_their_arms() -> None:
    spec = {"name": "spirals", "n_samples": 600, "num_classes": 3, "turns": 1.5, "noise": 0.0}
    x, y = _all(DATASETS.build(spec, seed=0))
    r = x.norm(dim=1)
    assert (r > 0).all() and (r <= 1 + 1e-6).all()
    theta = torch.atan2(x[:, 1], x[:, 0])
    expected = 2 * math.pi * (1.5 * r + y / 3)
    # equal angles modulo 2π
    diff = torch.remainder(theta - expected + math.pi, 2 * math.pi) - math.pi
    assert diff.abs().max() < 1e-4


def test_spiral_noise_has_its_std() -> None:
    spec = {"name": "spirals", "n_samples": 4000}
    clean = DATASETS.build({**spec, "noise": 0.0}, seed=3)
    noisy = DATASETS.build({**spec, "noise": 0.1}, seed=3)
    delta = noisy.train_x - clean.train_x
    assert abs(float(delta.std()) - 0.1) < 0.005


def _linear_fit(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.linalg.lstsq(x.double(), t.double()).solution
    return w, t.double() - x.double() @ w


def test_linear_teacher_is_recovered_exactly_and_teacher_seed_fixes_it() -> None:
    spec = {"name": "teacher_student", "teacher_hidden": [], "num_outputs": 3, "teacher_seed": 7}
    a = DATASETS.build(spec, seed=0)
    b = DATASETS.build(spec, seed=1)
    assert a.info.task == "regression" and a.info.num_classes == 3
    assert a.train_y.dtype == torch.float32 and a.train_y.shape == (1600, 3)
    assert not torch.equal(a.train_x, b.train_x)  # inputs follow the job seed
    w_a, res_a = _linear_fit(a.train_x, a.train_y)
    w_b, _ = _linear_fit(b.val_x, b.val_y)
    assert res_a.abs().max() < 1e-4
    torch.testing.assert_close(w_a, w_b, atol=1e-5, rtol=0)  # ... the teacher its own seed
    # N(0, 1/fan_in) weights on unit Gaussian inputs: unit-variance outputs
    assert 0.7 < float(a.train_y.std()) < 1.3


def test_output_noise_is_on_training_targets_only() -> None:
    spec = {"name": "teacher_student", "teacher_hidden": [], "n_samples": 5000}
    data = DATASETS.build({**spec, "output_noise": 0.3}, seed=2)
    _, train_residual = _linear_fit(data.train_x, data.train_y)
    _, val_residual = _linear_fit(data.val_x, data.val_y)
    assert abs(float(train_residual.std()) - 0.3) < 0.02
    assert val_residual.abs().max() < 1e-4


def test_classification_is_the_argmax_of_the_same_teacher() -> None:
    spec = {"name": "teacher_student", "num_outputs": 5, "teacher_seed": 1}
    reg = DATASETS.build(spec, seed=0)
    cls = DATASETS.build({**spec, "task": "classification"}, seed=0)
    assert cls.info.task == "classification" and cls.info.num_classes == 5
    assert torch.equal(cls.train_x, reg.train_x)
    assert torch.equal(cls.train_y, reg.train_y.argmax(-1))
    assert torch.equal(cls.val_y, reg.val_y.argmax(-1))
    assert len(torch.unique(cls.train_y)) == 5


def test_classification_noise_settings() -> None:
    spec = {"name": "teacher_student", "task": "classification", "teacher_seed": 1}
    clean = DATASETS.build(spec, seed=0)
    noisy = DATASETS.build({**spec, "label_noise": 0.25}, seed=0)
    assert int((noisy.train_y != clean.train_y).sum()) == 400
    assert torch.equal(noisy.val_y, clean.val_y)
    logit_noise = DATASETS.build({**spec, "output_noise": 1.0}, seed=0)
    changed = float((logit_noise.train_y != clean.train_y).float().mean())
    assert 0.05 < changed < 0.95
    assert torch.equal(logit_noise.val_y, clean.val_y)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "teacher_student", "label_noise": 0.1}, "output_noise"),
        ({"name": "teacher_student", "task": "classification", "num_outputs": 1}, ">= 2"),
    ],
)
def test_teacher_student_rejects_settings_that_do_not_fit_the_task(
    data: dict[str, object], message: str
) -> None:
    raw = {"data": data, "model": {"name": "mlp"}, "optimizer": {"name": "sgd"}}
    with pytest.raises(SpecError, match=message):
        parse_spec({**raw, "train": {"steps": 1}})
