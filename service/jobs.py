"""Job lifecycle: submit, claim with a lease, heartbeat, cancel, finish; every change an event.

Every write from a worker is fenced by (job id, attempt, lease owner, status), so a stale attempt
can never overwrite a newer one.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import Job, JobEvent
from models.base import utcnow
from service.references import check_references
from service.scheduler import check_submission, release
from service.states import JobStatus, check_transition
from service.storage import ArtifactStore
from trainlib.spec import parse_spec, resolve, spec_hash


class JobNotFound(LookupError):
    pass


class IdempotencyConflict(ValueError):
    pass


@dataclass(frozen=True)
class Submitted:
    job: Job
    created: bool


def add_event(
    session: Session,
    job_id: uuid.UUID,
    attempt: int,
    kind: str,
    status: str | None = None,
    **detail: Any,
) -> None:
    session.add(JobEvent(job_id=job_id, attempt=attempt, kind=kind, status=status, detail=detail))


def submit_job(
    session: Session,
    *,
    team_id: uuid.UUID,
    raw_spec: Any,
    idempotency_key: str | None = None,
    store: ArtifactStore | None = None,
    max_priority: str = "normal",
    pool: str = "regimen",
) -> Submitted:
    """Validate (raises SpecError before anything is written) and store a queued job.

    Also refused before anything is stored: a priority above the key's `max_priority`, more GPUs
    than any worker has, a team over its queued-jobs quota (service/scheduler.py).
    """
    spec = parse_spec(raw_spec)
    resolved = resolve(spec)
    if store is not None:
        check_references(session, team_id, resolved, store)
    digest = spec_hash(resolved)
    if idempotency_key:
        existing = _by_idempotency_key(session, team_id, idempotency_key)
        if existing is not None:
            return _replay(existing, digest)
    check_submission(
        session,
        team_id,
        gpus=spec.resources.gpus,
        priority=spec.resources.priority,
        key_max_priority=max_priority,
    )
    job = Job(
        team_id=team_id,
        name=spec.name,
        spec=raw_spec,
        resolved_spec=resolved,
        spec_hash=digest,
        idempotency_key=idempotency_key,
        status=JobStatus.QUEUED,
        attempt=0,
        max_attempts=spec.resources.max_attempts,
        gpus=spec.resources.gpus,
        priority=spec.resources.priority,
        pool=pool,
        latest_metrics={},
    )
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except IntegrityError:
        # Another request with the same idempotency key won the race.
        if not idempotency_key:
            raise
        existing = _by_idempotency_key(session, team_id, idempotency_key)
        assert existing is not None
        return _replay(existing, digest)
    add_event(session, job.id, 0, "status", JobStatus.QUEUED, message="submitted")
    return Submitted(job, created=True)


def _by_idempotency_key(session: Session, team_id: uuid.UUID, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.team_id == team_id, Job.idempotency_key == key))


def _replay(existing: Job, digest: str) -> Submitted:
    if existing.spec_hash != digest:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used with a different spec; "
            "use a new key for a new job"
        )
    return Submitted(existing, created=False)


def get_job(session: Session, job_id: uuid.UUID, team_id: uuid.UUID | None = None) -> Job:
    """The job, or JobNotFound; with a team, another team's job is not found either."""
    job = session.get(Job, job_id)
    if job is None or (team_id is not None and job.team_id != team_id):
        raise JobNotFound(f"no job {job_id}")
    return job


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    next_cursor: str | None


def _encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(created), uuid.UUID(job_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor; pass the next_cursor of a previous page") from exc


def list_jobs(
    session: Session,
    team_id: uuid.UUID,
    *,
    status: str | None = None,
    name: str | None = None,
    created_after: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page:
    """Newest first, keyset-paginated on (created_at, id)."""
    query = select(Job).where(Job.team_id == team_id)
    if status:
        query = query.where(Job.status == JobStatus(status))
    if name:
        query = query.where(Job.name == name)
    if created_after:
        query = query.where(Job.created_at > created_after)
    if cursor:
        created, job_id = _decode_cursor(cursor)
        query = query.where(
            or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
        )
    rows = list(
        session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1))
    )
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return Page(rows[:limit], next_cursor)


def claim_job(session: Session, job_id: uuid.UUID, owner: str, lease_seconds: float) -> int | None:
    """Take a queued job: a lease and attempt + 1. None if it is claimed, finished or unknown."""
    now = utcnow()
    attempt = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED, Job.cancel_requested.is_(False))
        .values(
            status=JobStatus.RUNNING,
            attempt=Job.attempt + 1,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=func.coalesce(Job.started_at, now),
            updated_at=now,
        )
        .returning(Job.attempt)
    ).scalar_one_or_none()
    if attempt is not None:
        add_event(session, job_id, attempt, "status", JobStatus.RUNNING, worker=owner)
    return attempt


def _fenced(job_id: uuid.UUID, attempt: int, owner: str) -> Any:
    return and_(
        Job.id == job_id,
        Job.attempt == attempt,
        Job.lease_owner == owner,
        Job.status == JobStatus.RUNNING,
    )


def lock_attempt(session: Session, job_id: uuid.UUID, attempt: int, owner: str) -> Job | None:
    """The job row, locked until commit, if this attempt is still current; else None.

    Holding the row lock while publishing a checkpoint keeps the reaper from requeueing the job
    halfway: a stale attempt's files are never registered.
    """
    return session.scalar(select(Job).where(_fenced(job_id, attempt, owner)).with_for_update())


def requeue_attempt(
    session: Session, job_id: uuid.UUID, attempt: int, owner: str, reason: str, message: str
) -> bool:
    """End the current attempt after an infrastructure failure: back to queued for a retry.

    The caller checks attempts are left (the reaper does; a worker reporting a lost broker or
    database connection uses `retry_or_fail`).
    """
    now = utcnow()
    done = session.execute(
        update(Job)
        .where(_fenced(job_id, attempt, owner))
        .values(
            status=JobStatus.QUEUED,
            lease_owner=None,
            lease_expires_at=None,
            dispatched_at=None,  # the dispatcher sends it again at once
            updated_at=now,
        )
        .returning(Job.id)
    ).scalar_one_or_none()
    if done is None:
        return False
    release(session, job_id)  # placed again by the next scheduling pass, maybe elsewhere
    add_event(session, job_id, attempt, "status", JobStatus.QUEUED, reason=reason, message=message)
    return True


def retry_or_fail(
    session: Session, job_id: uuid.UUID, attempt: int, owner: str, reason: str, message: str
) -> JobStatus | None:
    """An infrastructure failure: requeue if attempts are left, else fail with `reason`."""
    job = lock_attempt(session, job_id, attempt, owner)
    if job is None:
        return None
    if job.cancel_requested:  # it was stopping anyway: a retry would never be claimed
        finish_job(session, job_id, attempt, owner, JobStatus.CANCELLED, message=message)
        return JobStatus.CANCELLED
    if job.attempt < job.max_attempts:
        requeue_attempt(session, job_id, attempt, owner, reason, message)
        return JobStatus.QUEUED
    spent = f"{message} (attempt {attempt} of {job.max_attempts}: no attempts left)"
    finish_job(session, job_id, attempt, owner, JobStatus.FAILED, reason=reason, message=spent)
    return JobStatus.FAILED


def renew_lease(
    session: Session, job_id: uuid.UUID, attempt: int, owner: str, lease_seconds: float
) -> bool | None:
    """Extend the lease; returns whether a cancel was requested, or None if the lease is lost."""
    now = utcnow()
    cancel: bool | None = session.execute(
        update(Job)
        .where(_fenced(job_id, attempt, owner))
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
        .returning(Job.cancel_requested)
    ).scalar_one_or_none()
    return cancel


def record_progress(
    session: Session,
    job_id: uuid.UUID,
    attempt: int,
    owner: str,
    step: int,
    total: int,
    latest: dict[str, float],
) -> bool:
    """Progress and latest metrics of the current attempt; False if this attempt is stale."""
    job = lock_attempt(session, job_id, attempt, owner)
    if job is None:
        return False
    job.progress_step = step
    job.total_steps = total
    job.latest_metrics = {**job.latest_metrics, **latest}
    return True


def finish_job(
    session: Session,
    job_id: uuid.UUID,
    attempt: int,
    owner: str,
    status: JobStatus,
    *,
    reason: str | None = None,
    message: str | None = None,
) -> bool:
    """End the current attempt; False (nothing written) if the attempt is no longer current."""
    check_transition(JobStatus.RUNNING, status)
    now = utcnow()
    done = session.execute(
        update(Job)
        .where(_fenced(job_id, attempt, owner))
        .values(
            status=status,
            failure_reason=reason,
            failure_message=message,
            finished_at=now,
            updated_at=now,
            lease_owner=None,
            lease_expires_at=None,
        )
        .returning(Job.id)
    ).scalar_one_or_none()
    if done is None:
        return False
    detail = {k: v for k, v in {"reason": reason, "message": message}.items() if v}
    add_event(session, job_id, attempt, "status", status, **detail)
    return True


def request_cancel(session: Session, job: Job) -> Job:
    """A queued job is cancelled at once; a running one is asked to stop at its next step."""
    now = utcnow()
    cancelled = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, finished_at=now, updated_at=now)
        .returning(Job.id)
    ).scalar_one_or_none()
    if cancelled is not None:
        add_event(session, job.id, job.attempt, "status", JobStatus.CANCELLED, message="cancelled")
    else:
        requested = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.RUNNING)
            .where(Job.cancel_requested.is_(False))
            .values(cancel_requested=True, updated_at=now)
            .returning(Job.id)
        ).scalar_one_or_none()
        if requested is not None:
            add_event(session, job.id, job.attempt, "cancel_requested")
        else:
            session.refresh(job)
            if JobStatus(job.status).is_final:
                check_transition(job.status, JobStatus.CANCELLED)  # raises IllegalTransition
    session.flush()
    session.refresh(job)
    return job


def list_events(session: Session, job_id: uuid.UUID, after_id: int = 0) -> list[JobEvent]:
    return list(
        session.scalars(
            select(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.id > after_id)
            .order_by(JobEvent.id)
        )
    )
