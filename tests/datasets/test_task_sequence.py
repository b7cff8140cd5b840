"""task_sequence: permuted-input and random-label tasks built from a base set."""

from __future__ import annotations

import pytest
import torch

from trainlib.errors import DataError
from trainlib.registries import DATASETS
from trainlib.spec import SpecError, parse_spec

BASE = {"name": "blobs", "n_samples": 200, "n_features": 6, "batch_size": 32}


def test_each_task_permutes_the_features_its_own_way() -> None:
    spec = {"name": "task_sequence", "base": BASE, "n_tasks": 4, "steps_per_task": 5}
    first = DATASETS.build(spec, seed=0)
    base = DATASETS.build(BASE, seed=0)
    assert first.tasks is not None and first.tasks.n_tasks == 4
    perms = []
    for k in range(4):
        task = first.for_task(k)
        # a permutation of the columns, the same one for training and validation
        perm = [int((base.train_x == task.train_x[:, [j]]).all(0).nonzero()[0]) for j in range(6)]
        assert sorted(perm) == list(range(6))
        assert torch.equal(task.train_x, base.train_x[:, perm])
        assert torch.equal(task.val_x, base.val_x[:, perm])
        assert torch.equal(task.train_y, base.train_y) and torch.equal(task.val_y, base.val_y)
        perms.append(perm)
    assert len({tuple(p) for p in perms}) == 4
    assert torch.equal(first.train_x, first.for_task(0).train_x)  # the bundle is task 0's
    assert torch.equal(first.for_task(2).train_x, first.for_task(2).train_x)


def test_image_inputs_permute_pixels_and_keep_their_shape() -> None:
    spec = {"name": "task_sequence", "base": {"name": "digits", "flatten": False}}
    data = DATASETS.build(spec, seed=0)
    task = data.for_task(1)
    assert task.train_x.shape[1:] == (1, 8, 8)
    torch.testing.assert_close(
        task.train_x.flatten(1).sort(1).values, data.tasks.base.train_x.flatten(1).sort(1).values
    )


def test_random_labels_are_fresh_per_task_and_validated_on_the_training_set() -> None:
    spec = {
        "name": "task_sequence",
        "base": BASE,
        "kind": "random_labels",
        "n_tasks": 3,
        "train_subset": 100,
        "epochs_per_task": 2,
    }
    data = DATASETS.build(spec, seed=0)
    assert data.tasks is not None and data.tasks.steps_per_task == 2 * 4  # 100 / 32 → 4 steps
    labels = [data.for_task(k).train_y for k in range(3)]
    for k, y in enumerate(labels):
        task = data.for_task(k)
        assert len(y) == 100 and torch.equal(task.val_x, task.train_x)
        assert torch.equal(task.val_y, y)
        assert y.min() >= 0 and y.max() < 3
    # different tasks agree only by chance (≈ 1/3)
    assert float((labels[0] == labels[1]).float().mean()) < 0.5


def test_tasks_follow_the_seed() -> None:
    spec = {"name": "task_sequence", "base": BASE, "n_tasks": 2}
    a, b, c = (DATASETS.build(spec, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.for_task(1).train_x, b.for_task(1).train_x)
    assert not torch.equal(a.for_task(1).train_x, c.for_task(1).train_x)


def test_step_to_task() -> None:
    spec = {"name": "task_sequence", "base": BASE, "n_tasks": 3, "steps_per_task": 4}
    tasks = DATASETS.build(spec, seed=0).tasks
    assert tasks is not None and tasks.total_steps == 12
    assert [tasks.task_at(s) for s in range(12)] == [0] * 4 + [1] * 4 + [2] * 4
    assert [d for d in range(1, 13) if tasks.ends_task(d)] == [4, 8, 12]
    with pytest.raises(IndexError):
        tasks.bundle(3)


def test_base_spec_is_validated_and_kept_in_the_resolved_spec() -> None:
    raw = {
        "data": {"name": "task_sequence", "base": {"name": "spirals", "noise": 0.2}},
        "model": {"name": "mlp"},
        "optimizer": {"name": "sgd"},
        "train": {"steps": 1},
    }
    spec = parse_spec(raw)
    dumped = spec.model_dump(mode="json")["data"]["base"]
    assert dumped["name"] == "spirals" and dumped["noise"] == 0.2 and dumped["turns"] == 1.0
    for base, message in [
        ({"name": "nope"}, "unknown dataset 'nope'"),
        ({"name": "spirals", "nois": 0.2}, "nois"),
        ({"name": "task_sequence"}, "cannot be another task sequence"),
    ]:
        with pytest.raises(SpecError, match=message):
            parse_spec({**raw, "data": {"name": "task_sequence", "base": base}})
    both = {"name": "task_sequence", "steps_per_task": 2, "epochs_per_task": 1}
    with pytest.raises(SpecError, match="not both"):
        parse_spec({**raw, "data": both})


def test_base_must_be_a_classification_set() -> None:
    spec = {"name": "task_sequence", "base": {"name": "char_text"}}
    with pytest.raises(DataError, match="classification base"):
        DATASETS.build(spec, seed=0)
