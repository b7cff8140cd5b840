"""Every data set through the loop: tiny jobs train, sequences and regression are scored as
their task needs, and task sequences switch task at their boundaries."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainlib import CollectingSink, parse_spec, train
from trainlib.data import BatchOrder, DataBundle, DataInfo
from trainlib.errors import DataError
from trainlib.loop import evaluate
from trainlib.registries import DATASETS, LOSSES
from trainlib.scoring import PerPosition, loss_for_task

CPU = torch.device("cpu")
MLP = {"name": "mlp", "hidden": [32]}

DATA_SETS: list[dict[str, Any]] = [
    {"name": "digits", "label_noise": 0.2, "label_noise_kind": "pair_flip"},
    {"name": "blobs", "batch_size": 64},
    {"name": "spirals", "batch_size": 64},
    {"name": "teacher_student", "task": "classification", "label_noise": 0.1},
    {"name": "modular_arithmetic", "p": 23, "batch_size": 64},
    {"name": "modular_arithmetic", "p": 23, "encoding": "one_hot", "label_corruption": 0.2},
    {"name": "task_sequence", "base": {"name": "blobs"}, "n_tasks": 3, "steps_per_task": 4},
    {"name": "task_sequence", "kind": "random_labels", "train_subset": 64, "epochs_per_task": 4},
]


def job(data: dict[str, Any], **changes: Any) -> Any:
    raw: dict[str, Any] = {
        "seed": 0,
        "data": data,
        "model": MLP,
        "optimizer": {"name": "adamw", "lr": 3e-3},
        "train": {"steps": 12, "log_every": 4, "eval_every": 12, "device": "cpu"},
    }
    raw.update(changes)
    return parse_spec(raw)


@pytest.mark.parametrize("data", DATA_SETS, ids=lambda d: d["name"])
def test_same_seed_same_first_batch_different_seed_differs(data: dict[str, Any]) -> None:
    def first_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        bundle: DataBundle = DATASETS.build(data, seed=seed)
        order = BatchOrder(len(bundle.train_x), bundle.batch_size, seed=seed + 1)
        x, y, _ = next(order.batches(bundle))
        return x, y

    (x0, y0), (x0b, y0b), (x1, _) = first_batch(0), first_batch(0), first_batch(1)
    assert torch.equal(x0, x0b) and torch.equal(y0, y0b)
    assert not torch.equal(x0, x1)


@pytest.mark.parametrize("data", DATA_SETS, ids=lambda d: d["name"])
def test_a_tiny_mlp_trains_on_each_data_set(data: dict[str, Any]) -> None:
    sink = CollectingSink()
    result = train(job(data), sink, device=CPU)
    losses = [v for _, v in sink.series("loss")]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert math.isfinite(result.final_metrics["val_loss"])
    assert 0 <= result.final_metrics["val_accuracy"] <= 1
    if data["name"] != "task_sequence":  # a new task starts from a higher loss
        assert losses[-1] < losses[0]


def test_regression_trains_without_accuracy() -> None:
    sink = CollectingSink()
    result = train(job({"name": "teacher_student"}, loss={"name": "mse"}), sink, device=CPU)
    names = {m.name for m in sink.metrics}
    assert "accuracy" not in names and "val_accuracy" not in names
    losses = [v for _, v in sink.series("loss")]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert math.isfinite(result.final_metrics["val_loss"])


def test_a_transformer_trains_on_char_text() -> None:
    model = {"name": "transformer", "d_model": 32, "n_layers": 1, "n_heads": 2, "max_len": 32}
    data = {"name": "char_text", "context_length": 32, "batch_size": 16}
    sink = CollectingSink()
    result = train(job(data, model=model), sink, device=CPU)
    losses = [v for _, v in sink.series("loss")]
    vocab = DATASETS.build(data, seed=0).info.vocab_size
    assert math.isfinite(losses[-1]) and losses[-1] < losses[0] < math.log(vocab) + 1
    assert 0 <= result.final_metrics["val_accuracy"] <= 1


def test_a_transformer_trains_on_modular_tokens() -> None:
    model = {"name": "transformer", "d_model": 32, "n_layers": 1, "n_heads": 2, "max_len": 4}
    data = {"name": "modular_arithmetic", "p": 23, "batch_size": 64}
    sink = CollectingSink()
    result = train(job(data, model=model), sink, device=CPU)
    losses = [v for _, v in sink.series("loss")]
    assert math.isfinite(losses[-1]) and losses[-1] < losses[0]
    assert 0 <= result.final_metrics["val_accuracy"] <= 1


def test_per_position_loss_is_the_mean_over_every_position() -> None:
    logits = torch.randn(3, 5, 7)
    labels = torch.randint(0, 7, (3, 5))
    loss = loss_for_task(LOSSES.build({"name": "cross_entropy"}), DataInfo((5,), 7, "sequence"))
    assert isinstance(loss, PerPosition)
    by_hand = torch.stack(
        [-F.log_softmax(logits[b, t], -1)[labels[b, t]] for b in range(3) for t in range(5)]
    ).mean()
    torch.testing.assert_close(loss(logits, labels), by_hand)
    soft = F.one_hot(labels, 7).float()
    torch.testing.assert_close(loss(logits, soft), by_hand)
    plain = LOSSES.build({"name": "cross_entropy"})
    assert loss_for_task(plain, DataInfo((5,), 7)) is plain


class CopyPrevious(nn.Module):
    """Predicts that the next character is the current one."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.one_hot(x, self.vocab).float() * 5


def test_sequence_accuracy_counts_positions() -> None:
    data: DataBundle = DATASETS.build({"name": "char_text", "context_length": 16}, seed=0)
    vocab = data.info.num_classes
    loss_fn = loss_for_task(LOSSES.build({"name": "cross_entropy"}), data.info)
    scores = evaluate(CopyPrevious(vocab), loss_fn, data)
    repeats = (data.val_x == data.val_y).float().mean()  # "ll", "ee", "  " ...
    assert 0 < float(repeats) < 0.2
    assert scores["val_accuracy"] == pytest.approx(float(repeats))
    logits = CopyPrevious(vocab)(data.val_x)
    expected = F.cross_entropy(logits.reshape(-1, vocab), data.val_y.reshape(-1))
    assert scores["val_loss"] == pytest.approx(float(expected), rel=1e-5)


def test_task_sequence_switches_task_at_each_boundary() -> None:
    # A learning rate too small to move the weights: the full-batch training loss then only
    # changes when the task (its random labels) does, and equals that task's validation loss.
    data = {
        "name": "task_sequence",
        "base": {"name": "blobs", "batch_size": 256},
        "kind": "random_labels",
        "train_subset": 200,
        "n_tasks": 4,
        "steps_per_task": 3,
    }
    spec = job(
        data,
        optimizer={"name": "sgd", "lr": 1e-12},
        train={"steps": 12, "log_every": 1, "eval_every": 100, "device": "cpu"},
    )
    sink = CollectingSink()
    train(spec, sink, device=CPU)
    assert sink.series("task") == [(3, 0.0), (6, 1.0), (9, 2.0), (12, 3.0)]
    task_loss = dict(sink.series("task_loss"))
    assert len(set(task_loss.values())) == 4
    for step, loss in sink.series("loss"):
        end = 3 * math.ceil(step / 3)
        assert loss == pytest.approx(task_loss[end], rel=1e-5), step
    assert {s for s, _ in sink.series("task_accuracy")} == {3, 6, 9, 12}


def test_task_accuracy_is_the_current_tasks_validation_accuracy() -> None:
    data = {"name": "task_sequence", "base": {"name": "blobs"}, "n_tasks": 2, "steps_per_task": 6}
    spec = job(data, train={"steps": 12, "log_every": 6, "eval_every": 6, "device": "cpu"})
    sink = CollectingSink()
    train(spec, sink, device=CPU)
    # evaluated at the same steps, on the same (current) task
    assert sink.series("task_accuracy") == sink.series("val_accuracy")
    assert [s for s, _ in sink.series("task")] == [6, 12]


def test_a_job_longer_than_its_task_sequence_is_refused() -> None:
    data = {"name": "task_sequence", "base": {"name": "blobs"}, "n_tasks": 2, "steps_per_task": 5}
    with pytest.raises(DataError, match="2 tasks of 5 steps"):
        train(job(data), device=CPU)
