"""A task sequence stopped mid-task (or right at a boundary) and resumed equals the whole run:
the task follows from the step, the batch order from its saved state."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.checkpoint.helpers import assert_resume_is_bit_identical
from trainlib import parse_spec
from trainlib.spec import JobSpec


def sequence_job(kind: str) -> JobSpec:
    return parse_spec(
        {
            "name": "resume-tasks",
            "seed": 3,
            "data": {
                "name": "task_sequence",
                "base": {"name": "blobs", "n_samples": 300, "batch_size": 64},
                "kind": kind,
                "n_tasks": 3,
                "steps_per_task": 3,
            },
            "model": {"name": "mlp", "hidden": [16]},
            "optimizer": {"name": "adamw", "lr": 3e-3},
            "train": {
                "steps": 9,
                "log_every": 2,
                "eval_every": 4,
                "checkpoint_every": 4,
                "device": "cpu",
            },
        }
    )


@pytest.mark.parametrize("kind", ["permuted_input", "random_labels"])
@pytest.mark.parametrize("stop_at", [3, 5])
def test_task_sequence_resumes_bit_identically(kind: str, stop_at: int, tmp_path: Path) -> None:
    whole = assert_resume_is_bit_identical(sequence_job(kind), tmp_path, stop_at=stop_at)
    assert [(s, v) for s, name, v in whole.metrics if name == "task"] == [
        (3, 0.0),
        (6, 1.0),
        (9, 2.0),
    ]
