"""Specs may name other jobs of the same team (a distillation teacher, a weight-selection source):
any field whose name ends in `_job`. They must exist, belong to the team, have succeeded and
have a final checkpoint; the trainer resolves them to (resolved spec, checkpoint)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from models import Job
from service.datasets import dataset_problems
from service.storage import ArtifactStore
from trainlib.spec import SpecError

CHECKPOINT = "checkpoint.safetensors"


def job_references(resolved: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(field path, job id) for every `*_job` field of a resolved spec."""
    if isinstance(resolved, dict):
        for key, value in resolved.items():
            here = f"{path}.{key}" if path else key
            if key.endswith("_job") and isinstance(value, str):
                yield here, value
            else:
                yield from job_references(value, here)
    elif isinstance(resolved, list):
        for i, value in enumerate(resolved):
            yield from job_references(value, f"{path}[{i}]")


def check_references(
    session: Session, team_id: uuid.UUID, resolved: dict[str, Any], store: ArtifactStore
) -> None:
    """Raise SpecError (nothing stored) for a reference that cannot be used."""
    errors = []
    for path, ref in job_references(resolved):
        problem = _problem(session, team_id, ref, store, resolved)
        if problem:
            errors.append({"path": path, "message": problem})
    errors += dataset_problems(session, team_id, resolved)
    if errors:
        raise SpecError(errors)


def _problem(
    session: Session, team_id: uuid.UUID, ref: str, store: ArtifactStore, resolved: dict[str, Any]
) -> str | None:
    try:
        job_id = uuid.UUID(ref)
    except ValueError:
        return f"{ref!r} is not a job id"
    job = session.get(Job, job_id)
    if job is None or job.team_id != team_id:
        return f"no job {ref} in your team"
    if job.status != "succeeded":
        return f"job {ref} is {job.status}; only a succeeded job has a final checkpoint"
    if not (store.job_dir(job_id) / CHECKPOINT).is_file():
        return f"job {ref} has no final checkpoint"
    if job.resolved_spec.get("data") != resolved.get("data"):
        theirs, ours = job.resolved_spec.get("data", {}), resolved.get("data", {})
        if theirs.get("name") != ours.get("name"):
            return (
                f"job {ref} trained on data set {theirs.get('name')!r}, this job on "
                f"{ours.get('name')!r}: its outputs cannot match"
            )
    return None


def resolver(session_factory: Any, team_id: uuid.UUID, store: ArtifactStore) -> Any:
    """The trainer's `resolve_job`: another job of the team -> (resolved spec, checkpoint)."""

    def resolve(ref: str) -> tuple[dict[str, Any], Path]:
        job_id = uuid.UUID(ref)
        with session_factory() as session:
            job = session.get(Job, job_id)
            if job is None or job.team_id != team_id:
                raise LookupError(f"no job {ref} in this team")
            spec = dict(job.resolved_spec)
        return spec, store.job_dir(job_id) / CHECKPOINT

    return resolve
