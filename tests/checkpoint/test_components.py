"""Every registered regularizer and loss, pruning masks and both mixed precisions resume
bit-identically from a full-state checkpoint (2 + 2 steps, a stop between log steps).

Components that need more than their defaults get the least that makes them run here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import trainlib.spec  # registers every component; JobSpec below
from tests.checkpoint.helpers import CPU, assert_resume_is_bit_identical, job
from trainlib import resolve, train
from trainlib.registries import LOSSES, REGULARIZERS

#: kd distils from another finished job (the service's resolve_job): tested on its own below
NEEDS_A_TEACHER_JOB = {"kd"}

#: settings and job changes for regularizers that cannot run on defaults and flat digits
REGULARIZER_JOBS: dict[str, dict[str, Any]] = {
    "cutmix": {"data": {"flatten": False}, "model": {"name": "cnn"}},
    "continual_backprop": {"model": {"name": "mlp", "hidden": [16, 16]}},
    "weight_compander": {"settings": {"function": "tanh", "bound": 1.0, "slope": 1.0}},
}

LOSS_SETTINGS: dict[str, dict[str, Any]] = {
    "gce": {"k": 0.5, "truncate_after": 1},  # its count of training batches crosses the stop
}


def short(**changes: Any) -> trainlib.spec.JobSpec:
    return job(steps=4, log_every=3, eval_every=4, checkpoint_every=4, **changes)


@pytest.mark.parametrize("name", sorted(set(REGULARIZERS.names()) - NEEDS_A_TEACHER_JOB))
def test_regularizer_resumes_bit_identically(name: str, tmp_path: Path) -> None:
    changes = dict(REGULARIZER_JOBS.get(name, {}))
    settings = changes.pop("settings", {})
    spec = short(regularizers=[{"name": name, **settings}], **changes)
    assert_resume_is_bit_identical(spec, tmp_path, stop_at=2)


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_resumes_bit_identically(name: str, tmp_path: Path) -> None:
    spec = short(loss={"name": name, **LOSS_SETTINGS.get(name, {})})
    assert_resume_is_bit_identical(spec, tmp_path, stop_at=2)


@pytest.mark.parametrize(
    "train",
    [
        {"pruning": {"name": "magnitude", "start_step": 1, "end_step": 3, "frequency": 1}},
        {"precision": "bf16"},
        {"precision": "fp16"},  # the gradient scaler's scale and growth tracker
    ],
    ids=["pruning", "bf16", "fp16"],
)
def test_training_options_resume_bit_identically(train: dict[str, Any], tmp_path: Path) -> None:
    assert_resume_is_bit_identical(short(**train), tmp_path, stop_at=2)


def test_kd_from_a_teacher_job_resumes_bit_identically(tmp_path: Path) -> None:
    teacher = job(steps=4, model={"name": "mlp", "hidden": [24]})
    done = train(teacher, None, out_dir=tmp_path / "teacher", device=CPU)
    assert done.checkpoint is not None
    found = (resolve(teacher), done.checkpoint)
    spec = short(regularizers=[{"name": "kd", "teacher_job": "teacher-1"}])
    assert_resume_is_bit_identical(spec, tmp_path, stop_at=2, resolve_job=lambda _job: found)
