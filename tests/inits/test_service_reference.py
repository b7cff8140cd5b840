"""weight_selection's `teacher_job` is checked by the service like every `*_job` field
(PostgreSQL): refused before anything is stored unless it names a finished job of the team."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from models import Job
from service.auth import get_or_create_team
from service.db import SessionFactory, transaction
from service.jobs import submit_job
from service.storage import ArtifactStore
from trainlib.spec import SpecError

TEACHER = {
    "data": {"name": "digits"},
    "model": {"name": "mlp", "hidden": [32]},
    "optimizer": {"name": "sgd", "lr": 0.1},
    "train": {"steps": 1},
}


def student(ref: str) -> dict[str, Any]:
    return {
        **TEACHER,
        "model": {"name": "mlp", "hidden": [16]},
        "init": {"name": "weight_selection", "teacher_job": ref},
    }


def test_teacher_job_must_be_a_finished_job_of_the_team(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    store = ArtifactStore(tmp_path)
    with transaction(session_factory) as session:
        team = get_or_create_team(session, f"ws-{uuid.uuid4().hex[:6]}")
        teacher = submit_job(session, team_id=team.id, raw_spec=TEACHER).job
    count = select(func.count()).select_from(Job).where(Job.team_id == team.id)

    with transaction(session_factory) as session, pytest.raises(SpecError) as info:
        submit_job(session, team_id=team.id, raw_spec=student(str(teacher.id)), store=store)
    (err,) = info.value.errors
    assert err["path"] == "init.teacher_job"
    assert "is queued" in err["message"]

    with transaction(session_factory) as session:
        assert session.scalar(count) == 1  # nothing stored
        session.get(Job, teacher.id).status = "succeeded"
    store.job_dir(teacher.id).mkdir(parents=True)
    (store.job_dir(teacher.id) / "checkpoint.safetensors").write_bytes(b"weights")
    with transaction(session_factory) as session:
        job = submit_job(session, team_id=team.id, raw_spec=student(str(teacher.id)), store=store)
        assert job.job.resolved_spec["init"]["teacher_job"] == str(teacher.id)
