"""Response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models import Job


class Progress(BaseModel):
    step: int
    total: int | None
    fraction: float | None


class Failure(BaseModel):
    reason: str | None
    message: str | None


class JobSummary(BaseModel):
    id: uuid.UUID
    name: str
    status: str
    attempt: int
    max_attempts: int
    progress: Progress
    latest_metrics: dict[str, float]
    failure: Failure | None
    cancel_requested: bool
    spec_hash: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job) -> JobSummary:
        return cls(**_summary_fields(job))


class Pending(BaseModel):
    """Why a queued job waits: its place in the queue and what it waits for."""

    position: int
    waiting_for: list[str]


class JobDetail(JobSummary):
    spec: dict[str, Any]
    resolved_spec: dict[str, Any]
    pending: Pending | None = None
    parent_job_id: uuid.UUID | None = None
    forked_from: str | None = None

    @classmethod
    def of(cls, job: Job) -> JobDetail:
        return cls(
            **_summary_fields(job),
            spec=job.spec,
            resolved_spec=job.resolved_spec,
            parent_job_id=job.parent_job_id,
            forked_from=job.forked_from,
        )


def _summary_fields(job: Job) -> dict[str, Any]:
    total = job.total_steps or job.resolved_spec.get("train", {}).get("steps")
    failure = (
        Failure(reason=job.failure_reason, message=job.failure_message)
        if job.failure_reason or job.status == "failed"
        else None
    )
    return {
        "id": job.id,
        "name": job.name,
        "status": job.status,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "progress": Progress(
            step=job.progress_step,
            total=total,
            fraction=round(job.progress_step / total, 4) if total else None,
        ),
        "latest_metrics": job.latest_metrics,
        "failure": failure,
        "cancel_requested": job.cancel_requested,
        "spec_hash": job.spec_hash,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


class JobPage(BaseModel):
    jobs: list[JobSummary]
    next_cursor: str | None


class Series(BaseModel):
    steps: list[int]
    values: list[float]


class MetricsOut(BaseModel):
    job_id: uuid.UUID
    series: dict[str, Series]


class EventOut(BaseModel):
    id: int
    attempt: int
    kind: str
    status: str | None
    detail: dict[str, Any]
    created_at: datetime


class ValidationOut(BaseModel):
    valid: bool
    resolved_spec: dict[str, Any]
    spec_hash: str
    estimate: dict[str, Any]


class ArtifactOut(BaseModel):
    name: str
    size_bytes: int
    modified_at: float


class CheckpointOut(BaseModel):
    name: str
    attempt: int
    step: int
    size_bytes: int
    metrics: dict[str, Any]
    created_at: datetime


class ForkIn(BaseModel):
    """`checkpoint`: a name from /checkpoints (the latest by default); `changes`: dotted paths."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str | None = Field(None, max_length=200)
    changes: dict[str, Any] = Field(default_factory=dict)
