"""`train(warm_start=...)`: a fork with changed settings starts from another run's model weights
(from its full state or its weights-only file) with a fresh optimizer, schedule and regularizers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.checkpoint.helpers import CPU, StopAfter, assert_same_tensors, job
from trainlib import TrainResult, train
from trainlib.checkpoint import CheckpointError, load_state
from trainlib.spec import JobSpec


def parent(tmp_path: Path, **changes: Any) -> TrainResult:
    done = train(job(steps=4, **changes), None, out_dir=tmp_path / "parent", device=CPU)
    assert done.state is not None and done.checkpoint is not None
    return done


def start_of(spec: JobSpec, out: Path, warm: Path) -> dict[str, Any]:
    """The child's full state at step 0 (it stops before its first step)."""
    result = train(spec, StopAfter(0), out_dir=out, device=CPU, warm_start=warm)
    assert result.status == "stopped" and result.step == 0 and result.state is not None
    return load_state(result.state, spec_hash=None)[1]


def test_a_changed_learning_rate_starts_from_the_parents_weights(tmp_path: Path) -> None:
    done = parent(tmp_path)
    assert done.state is not None
    child = job(steps=4, optimizer={"name": "adamw", "lr": 1e-4})
    state = start_of(child, tmp_path / "child", done.state)
    assert_same_tensors(load_state(done.state, spec_hash=None)[1]["model"], state["model"])
    assert state["optimizer"]["state"] == {}  # fresh moments
    assert state["optimizer"]["param_groups"][0]["lr"] == 1e-4


def test_a_weights_only_file_warm_starts_too(tmp_path: Path) -> None:
    done = parent(tmp_path)
    assert done.checkpoint is not None
    state = start_of(job(steps=2), tmp_path / "child", done.checkpoint)
    assert_same_tensors(load_file(str(done.checkpoint)), state["model"])


def test_reparametrized_weights_and_averages_start_from_the_parent(tmp_path: Path) -> None:
    # weight_norm renames the weights (parametrizations...): loaded once it is in place; the
    # EMA copy is taken after the load, so it starts from the parent's weights as well
    done = parent(tmp_path, regularizers=[{"name": "weight_norm"}])
    assert done.state is not None
    child = job(steps=4, regularizers=[{"name": "weight_norm"}, {"name": "ema"}])
    state = start_of(child, tmp_path / "child", done.state)
    saved = load_state(done.state, spec_hash=None)[1]["model"]
    assert any("parametrizations" in k for k in saved)
    assert_same_tensors(saved, state["model"])
    assert_same_tensors(saved, state["regularizers"]["ema"]["model"])


def test_another_model_is_refused(tmp_path: Path) -> None:
    done = parent(tmp_path)
    assert done.state is not None
    wider = job(steps=2, model={"name": "mlp", "hidden": [32]})
    with pytest.raises(CheckpointError, match="does not fit this job's model"):
        train(wider, None, device=CPU, warm_start=done.state)


def test_a_warm_start_trains_on_from_there(tmp_path: Path) -> None:
    done = parent(tmp_path)
    assert done.state is not None
    child = train(job(steps=4), None, device=CPU, warm_start=done.state)
    fresh = train(job(steps=4), None, device=CPU)
    assert child.status == "completed"
    assert child.final_metrics["val_loss"] < fresh.final_metrics["val_loss"]  # 8 steps vs 4
    assert torch.isfinite(torch.tensor(child.final_metrics["loss"]))
