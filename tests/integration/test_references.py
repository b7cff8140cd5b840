"""Specs that name other jobs (`*_job` fields): checked before anything is stored."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from models import Job
from service.auth import get_or_create_team
from service.db import SessionFactory, transaction
from service.jobs import submit_job
from service.references import check_references, job_references, resolver
from service.storage import ArtifactStore
from trainlib.spec import SpecError

SPEC = {
    "data": {"name": "digits"},
    "model": {"name": "mlp", "hidden": [8]},
    "optimizer": {"name": "sgd"},
    "train": {"steps": 1},
}


def student(ref: str, data: str = "digits") -> dict:
    return {"data": {"name": data}, "regularizers": [{"name": "kd", "teacher_job": ref}]}


def test_job_references_are_found_with_their_paths() -> None:
    found = list(job_references({"init": {"source_job": "a"}, **student("b")}))
    assert found == [("init.source_job", "a"), ("regularizers[0].teacher_job", "b")]


@pytest.fixture
def finished_job(session_factory: SessionFactory, tmp_path: Path) -> tuple[uuid.UUID, Job]:
    with transaction(session_factory) as session:
        team = get_or_create_team(session, f"refs-{uuid.uuid4().hex[:6]}")
        job = submit_job(session, team_id=team.id, raw_spec=SPEC).job
        job.status = "succeeded"
        return team.id, job


def errors_of(session: Session, team_id: uuid.UUID, resolved: dict, store: ArtifactStore) -> list:
    with pytest.raises(SpecError) as info:
        check_references(session, team_id, resolved, store)
    return info.value.errors


def test_references_must_be_usable(
    finished_job: tuple[uuid.UUID, Job], session: Session, tmp_path: Path
) -> None:
    team_id, job = finished_job
    store = ArtifactStore(tmp_path)
    path = "regularizers[0].teacher_job"

    (err,) = errors_of(session, team_id, student(str(job.id)), store)
    assert err["path"] == path and "no final checkpoint" in err["message"]

    store.job_dir(job.id).mkdir(parents=True)
    (store.job_dir(job.id) / "checkpoint.safetensors").write_bytes(b"x")
    check_references(session, team_id, student(str(job.id)), store)  # usable now

    (err,) = errors_of(session, uuid.uuid4(), student(str(job.id)), store)
    assert "no job" in err["message"]  # another team's job is not visible
    (err,) = errors_of(session, team_id, student(str(uuid.uuid4())), store)
    assert "no job" in err["message"]
    (err,) = errors_of(session, team_id, student("not-an-id"), store)
    assert "not a job id" in err["message"]
    (err,) = errors_of(session, team_id, student(str(job.id), data="other"), store)
    assert "cannot match" in err["message"]


def test_unfinished_jobs_cannot_be_referenced(
    session_factory: SessionFactory, session: Session, tmp_path: Path
) -> None:
    with transaction(session_factory) as s:
        team = get_or_create_team(s, f"refs-{uuid.uuid4().hex[:6]}")
        queued = submit_job(s, team_id=team.id, raw_spec=SPEC).job
    (err,) = errors_of(session, team.id, student(str(queued.id)), ArtifactStore(tmp_path))
    assert "is queued" in err["message"]


def test_resolver_returns_spec_and_checkpoint_of_the_same_team_only(
    finished_job: tuple[uuid.UUID, Job], session_factory: SessionFactory, tmp_path: Path
) -> None:
    team_id, job = finished_job
    store = ArtifactStore(tmp_path)
    spec, checkpoint = resolver(session_factory, team_id, store)(str(job.id))
    assert spec["model"]["hidden"] == [8]
    assert checkpoint == store.job_dir(job.id) / "checkpoint.safetensors"
    with pytest.raises(LookupError):
        resolver(session_factory, uuid.uuid4(), store)(str(job.id))
