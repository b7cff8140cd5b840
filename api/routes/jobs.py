"""/v1/jobs: submit, validate, list, read, cancel, metrics, events, artifacts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from api.body import read_document
from api.deps import KeyDep, QueueDep, SessionDep, SettingsDep, StoreDep, TeamDep
from api.schemas import (
    ArtifactOut,
    CheckpointOut,
    EventOut,
    ForkIn,
    JobDetail,
    JobPage,
    JobSummary,
    MetricsOut,
    Pending,
    Series,
    ValidationOut,
)
from models.base import utcnow
from service import checkpoints, fork
from service import jobs as job_service
from service.dispatch import publish_job
from service.metrics import read_metrics
from service.queue import JobQueue
from service.references import check_references
from service.scheduler import Policy, why_pending
from service.settings import Settings
from service.states import JobStatus
from trainlib.estimate import estimate
from trainlib.spec import parse_spec, resolve, spec_hash

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JobDetail)
async def submit_job(
    request: Request,
    response: Response,
    key: KeyDep,
    session: SessionDep,
    settings: SettingsDep,
    queue: QueueDep,
    store: StoreDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobDetail:
    raw = await read_document(request)
    submitted = job_service.submit_job(
        session,
        team_id=key.team_id,
        raw_spec=raw,
        idempotency_key=idempotency_key,
        store=store,
        max_priority=key.max_priority,
        pool=settings.task_queue,
    )
    session.commit()
    if submitted.created:
        await publish(session, queue, settings, submitted.job.id)
    else:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    return JobDetail.of(submitted.job)


async def publish(session: Session, queue: JobQueue, settings: Settings, job_id: uuid.UUID) -> None:
    """Place and send what can start now (service/dispatch.py). If the broker is down the job
    stays queued (still a 201) and the dispatcher sends it later."""
    await run_in_threadpool(publish_job, session, queue, settings, job_id)


@router.post("/validate", response_model=ValidationOut)
async def validate_job(
    request: Request, team: TeamDep, session: SessionDep, store: StoreDep
) -> ValidationOut:
    spec = parse_spec(await read_document(request))
    resolved = resolve(spec)
    check_references(session, team.id, resolved, store)
    return ValidationOut(
        valid=True, resolved_spec=resolved, spec_hash=spec_hash(resolved), estimate=estimate(spec)
    )


@router.get("", response_model=JobPage)
def list_jobs(
    team: TeamDep,
    session: SessionDep,
    settings: SettingsDep,
    status_filter: Annotated[JobStatus | None, Query(alias="status")] = None,
    name: str | None = None,
    created_after: datetime | None = None,
    limit: Annotated[int, Query(ge=1)] = 50,
    cursor: str | None = None,
) -> JobPage:
    if created_after is not None and created_after.tzinfo is None:
        created_after = created_after.replace(tzinfo=UTC)  # a time without a zone means UTC
    try:
        page = job_service.list_jobs(
            session,
            team.id,
            status=status_filter,
            name=name,
            created_after=created_after,
            limit=min(limit, settings.max_page_size),
            cursor=cursor,
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    return JobPage(jobs=[JobSummary.of(j) for j in page.jobs], next_cursor=page.next_cursor)


@router.get("/{job_id}", response_model=JobDetail)
def get_job(
    job_id: uuid.UUID, team: TeamDep, session: SessionDep, settings: SettingsDep
) -> JobDetail:
    job = job_service.get_job(session, job_id, team.id)
    detail = JobDetail.of(job)
    if job.status == JobStatus.QUEUED:  # "why pending": place in the queue and what it waits for
        why = why_pending(session, job, utcnow(), Policy.of(settings))
        detail.pending = Pending(**why) if why else None  # {}: claimed meanwhile
    return detail


@router.post("/{job_id}/cancel", response_model=JobDetail)
def cancel_job(job_id: uuid.UUID, team: TeamDep, session: SessionDep) -> JobDetail:
    job = job_service.request_cancel(session, job_service.get_job(session, job_id, team.id))
    session.commit()
    return JobDetail.of(job)


@router.get("/{job_id}/metrics", response_model=MetricsOut)
def get_metrics(
    job_id: uuid.UUID,
    team: TeamDep,
    session: SessionDep,
    settings: SettingsDep,
    name: Annotated[list[str] | None, Query(description="series to return; all by default")] = None,
    after_step: Annotated[int | None, Query(ge=0)] = None,
    max_points: Annotated[int | None, Query(ge=1)] = None,
) -> MetricsOut:
    job_service.get_job(session, job_id, team.id)
    points = min(max_points or settings.max_metric_points, settings.max_metric_points)
    series = read_metrics(
        session, job_id, names=name or (), after_step=after_step, max_points=points
    )
    return MetricsOut(
        job_id=job_id,
        series={
            n: Series(steps=[s for s, _ in pts], values=[v for _, v in pts])
            for n, pts in series.items()
        },
    )


@router.get("/{job_id}/events/history", response_model=list[EventOut])
def get_event_history(
    job_id: uuid.UUID, team: TeamDep, session: SessionDep, after_id: int = 0
) -> list[EventOut]:
    job_service.get_job(session, job_id, team.id)
    return [
        EventOut.model_validate(e, from_attributes=True)
        for e in job_service.list_events(session, job_id, after_id)
    ]


@router.get("/{job_id}/artifacts", response_model=list[ArtifactOut])
def list_artifacts(
    job_id: uuid.UUID, team: TeamDep, session: SessionDep, store: StoreDep
) -> list[ArtifactOut]:
    job_service.get_job(session, job_id, team.id)
    stats = [(p.name, p.stat()) for p in store.list(job_id)]
    return [ArtifactOut(name=n, size_bytes=s.st_size, modified_at=s.st_mtime) for n, s in stats]


@router.get("/{job_id}/artifacts/{name}")
def download_artifact(
    job_id: uuid.UUID, name: str, team: TeamDep, session: SessionDep, store: StoreDep
) -> FileResponse:
    job_service.get_job(session, job_id, team.id)
    try:
        path = store.path(job_id, name)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} has no artifact {name!r}")
    return FileResponse(path, filename=name, media_type="application/octet-stream")


@router.get("/{job_id}/checkpoints", response_model=list[CheckpointOut])
def list_checkpoints(job_id: uuid.UUID, team: TeamDep, session: SessionDep) -> list[CheckpointOut]:
    """Published full-state checkpoints, by step; download one at /artifacts/{name}."""
    job_service.get_job(session, job_id, team.id)
    return [
        CheckpointOut.model_validate(c, from_attributes=True)
        for c in checkpoints.list_checkpoints(session, job_id)
    ]


@router.post("/{job_id}/fork", status_code=status.HTTP_201_CREATED, response_model=JobDetail)
async def fork_job(
    job_id: uuid.UUID,
    body: ForkIn,
    team: TeamDep,
    session: SessionDep,
    settings: SettingsDep,
    queue: QueueDep,
    store: StoreDep,
) -> JobDetail:
    """A new job from one of this job's checkpoints (the latest by default), with changes."""
    parent = job_service.get_job(session, job_id, team.id)
    try:
        job = fork.fork_job(
            session, parent=parent, checkpoint=body.checkpoint, changes=body.changes, store=store
        )
    except fork.ForkError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    session.commit()
    await publish(session, queue, settings, job.id)
    return JobDetail.of(job)
