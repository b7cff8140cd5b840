"""The training loop end to end on tiny specs (CPU, a second or less each)."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors import safe_open

from trainlib import CollectingSink, parse_spec, resolve, spec_hash, train
from trainlib.checkpoint import load_weights
from trainlib.data import DataInfo
from trainlib.errors import Diverged
from trainlib.registries import MODELS
from trainlib.spec import JobSpec

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")


def tiny(**changes: Any) -> JobSpec:
    raw: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "data": {"name": "digits", "batch_size": 64},
        "model": {"name": "mlp", "hidden": [32]},
        "optimizer": {"name": "adamw", "lr": 3e-3},
        "train": {"steps": 60, "log_every": 10, "eval_every": 30},
    }
    raw.update(changes)
    return parse_spec(raw)


class RecordingSink(CollectingSink):
    def __init__(self) -> None:
        super().__init__()
        self.progress: list[tuple[int, int]] = []

    def on_progress(self, step: int, total: int) -> None:
        self.progress.append((step, total))


class StopAfter(RecordingSink):
    """Says "go on" to the first `n` questions, then "stop"."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.calls = 0

    def should_stop(self) -> bool:
        self.calls += 1
        return self.calls > self.n


def test_train_reports_metrics_and_progress(tmp_path: Path) -> None:
    sink = RecordingSink()
    result = train(tiny(), sink, out_dir=tmp_path, device=CPU)

    assert result.status == "completed"
    assert result.step == result.total_steps == 60
    names = {m.name for m in sink.metrics}
    assert {"loss", "accuracy", "lr", "val_loss", "val_accuracy"} <= names

    by_name: dict[str, list[int]] = defaultdict(list)
    for m in sink.metrics:
        by_name[m.name].append(m.step)
        assert math.isfinite(m.value)
    for name, steps in by_name.items():
        assert all(a < b for a, b in itertools.pairwise(steps)), name
    assert by_name["loss"] == [10, 20, 30, 40, 50, 60]
    assert by_name["val_loss"] == [30, 60]

    assert sink.progress, "on_progress was never called"
    assert sink.progress[-1] == (60, 60)
    assert all(total == 60 for _, total in sink.progress)

    for m in sink.metrics:
        if m.name in ("accuracy", "val_accuracy"):
            assert 0.0 <= m.value <= 1.0
        if m.name == "lr":
            assert m.value == pytest.approx(3e-3)
    # It learns: the training loss falls and validation accuracy is far above chance.
    losses = [v for _, v in sink.series("loss")]
    assert losses[-1] < losses[0]
    assert result.final_metrics["val_accuracy"] > 0.5
    assert result.final_metrics["val_loss"] == sink.series("val_loss")[-1][1]


def test_lr_metric_follows_the_schedule() -> None:
    sink = CollectingSink()
    spec = tiny(schedule={"name": "cosine", "warmup_steps": 10})
    train(spec, sink, device=CPU)
    lrs = dict(sink.series("lr"))
    # The lr logged at step k is the one used for the k-th update (schedule step k - 1).
    assert lrs[10] == pytest.approx(3e-3)  # last warmup step
    assert lrs[60] < lrs[30] < lrs[20]


def _run_checkpoint(tmp_path: Path, name: str, spec: JobSpec) -> dict[str, torch.Tensor]:
    result = train(spec, CollectingSink(), out_dir=tmp_path / name, device=CPU)
    assert result.checkpoint is not None
    return load_weights(result.checkpoint)


def test_same_seed_gives_bit_identical_checkpoints(tmp_path: Path) -> None:
    spec = tiny(model={"name": "mlp", "hidden": [32], "dropout": 0.1})
    a = _run_checkpoint(tmp_path, "a", spec)
    b = _run_checkpoint(tmp_path, "b", spec)
    assert a.keys() == b.keys() and a
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_different_seed_gives_different_checkpoint(tmp_path: Path) -> None:
    a = _run_checkpoint(tmp_path, "a", tiny(seed=0))
    c = _run_checkpoint(tmp_path, "c", tiny(seed=1))
    assert a.keys() == c.keys()
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_stop_request_returns_stopped_at_that_step(tmp_path: Path) -> None:
    sink = StopAfter(25)
    result = train(tiny(), sink, out_dir=tmp_path, device=CPU)
    assert result.status == "stopped"
    assert result.step == 25
    assert result.total_steps == 60
    assert max(m.step for m in sink.metrics) <= 25
    assert sink.checkpoints and sink.checkpoints[-1][0] == 25
    assert result.checkpoint is not None
    with safe_open(str(result.checkpoint), framework="pt") as fh:
        assert fh.metadata()["step"] == "25"


def test_stop_before_the_first_step() -> None:
    result = train(tiny(), StopAfter(0), device=CPU)
    assert result.status == "stopped"
    assert result.step == 0
    assert result.checkpoint is None  # no out_dir


@pytest.mark.parametrize("log_every", [1, 5])
def test_diverging_spec_raises_diverged_with_its_step(log_every: int) -> None:
    spec = tiny(
        model={"name": "mlp", "hidden": [512, 512]},
        optimizer={"name": "sgd", "lr": 10},
        train={"steps": 60, "log_every": log_every, "eval_every": 60},
    )
    with pytest.raises(Diverged) as info:
        train(spec, CollectingSink(), device=CPU)
    err = info.value
    assert err.reason == "diverged"
    assert 1 <= err.step < 60
    assert err.step % log_every == 0  # noticed at a logging step
    assert f"step {err.step}" in str(err)


def test_diverged_step_is_where_the_loss_first_goes_non_finite() -> None:
    # log_every=1 reads the loss every step, so the reported step is the first bad one:
    # every loss logged before it is finite.
    spec = tiny(
        model={"name": "mlp", "hidden": [512, 512]},
        optimizer={"name": "sgd", "lr": 10},
        train={"steps": 60, "log_every": 1, "eval_every": 60},
    )
    sink = CollectingSink()
    with pytest.raises(Diverged) as info:
        train(spec, sink, device=CPU)
    logged = sink.series("loss")
    assert [s for s, _ in logged] == list(range(1, info.value.step))
    assert all(math.isfinite(v) for _, v in logged)


def test_checkpoint_is_safetensors_with_step_and_spec_hash(tmp_path: Path) -> None:
    spec = tiny(train={"steps": 60, "log_every": 10, "eval_every": 30, "checkpoint_every": 20})
    sink = CollectingSink()
    result = train(spec, sink, out_dir=tmp_path, device=CPU)
    path = tmp_path / "checkpoint.safetensors"
    assert result.checkpoint == path and path.is_file()
    assert [step for step, _ in sink.checkpoints] == [20, 40, 60]
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
        keys = set(fh.keys())
    assert meta["step"] == "60"
    assert meta["spec_hash"] == spec_hash(resolve(spec))

    # The tensors are the model's state dict: same names and shapes as a freshly built model.
    fresh = MODELS.build(spec.model, DataInfo((64,), 10)).state_dict()
    assert keys == set(fresh)
    weights = load_weights(path)
    for key, tensor in fresh.items():
        assert weights[key].shape == tensor.shape
    # The weights load into that model.
    model = MODELS.build(spec.model, DataInfo((64,), 10))
    model.load_state_dict(weights)


def test_epochs_train_whole_passes(tmp_path: Path) -> None:
    spec = tiny(
        data={"name": "digits", "batch_size": 512},
        train={"epochs": 2, "log_every": 1, "eval_every": 100},
    )
    result = train(spec, CollectingSink(), device=CPU)
    n_train = 1797 - round(1797 * 0.2)
    assert result.total_steps == result.step == 2 * math.ceil(n_train / 512)


def test_grad_clip_norm_limits_sgd_updates() -> None:
    sgd = {"name": "sgd", "lr": 0.1}
    clipped = CollectingSink()
    spec = tiny(optimizer=sgd, train={"steps": 20, "log_every": 10, "grad_clip_norm": 1e-4})
    train(spec, clipped, device=CPU)
    free = CollectingSink()
    train(tiny(optimizer=sgd, train={"steps": 20, "log_every": 10}), free, device=CPU)
    # With a tiny clip norm the weights barely move, so the loss stays near where it began.
    (_, clipped_first), (_, clipped_last) = clipped.series("loss")
    (_, free_first), (_, free_last) = free.series("loss")
    assert abs(clipped_last - clipped_first) < 0.02
    assert free_last < free_first - 0.1
    assert free_last < clipped_last - 0.1


def test_quickstart_example_reaches_high_accuracy(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    spec = parse_spec(raw)
    sink = CollectingSink()
    result = train(spec, sink, out_dir=tmp_path, device=CPU)
    assert result.status == "completed"
    assert result.final_metrics["val_accuracy"] >= 0.95
