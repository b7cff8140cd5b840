"""The reaper: expired leases and queue timeouts.

A worker that dies (SIGKILL, lost host, partition) stops renewing its attempt's lease. Celery
would only redeliver its message after the visibility timeout (a day) and may deliver it twice on a
connection loss, so the database decides: an expired lease ends the attempt, and the job is queued
again (attempt + 1 at the next claim) or failed as `worker_lost` once max_attempts is spent.
Every change is one conditional UPDATE, so several reapers (one per worker) never double-count.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.orm import Session

from models import Job
from models.base import utcnow
from service.jobs import add_event
from service.scheduler import presume_lost, release
from service.states import FailureReason, JobStatus


@dataclass
class Reaped:
    requeued: list[uuid.UUID] = field(default_factory=list)
    worker_lost: list[uuid.UUID] = field(default_factory=list)
    cancelled: list[uuid.UUID] = field(default_factory=list)
    queue_timeouts: list[uuid.UUID] = field(default_factory=list)


def reap(session: Session, now: datetime | None = None) -> Reaped:
    """End every attempt whose lease expired, and fail jobs queued past resources.max_queue_s."""
    now = now or utcnow()
    result = Reaped()
    expired = session.execute(
        select(Job.id, Job.attempt, Job.max_attempts, Job.lease_owner, Job.cancel_requested).where(
            Job.status == JobStatus.RUNNING, Job.lease_expires_at < now
        )
    ).all()
    for job_id, attempt, max_attempts, owner, cancel in expired:
        if cancel:  # it was stopping anyway: no retry (a claim would refuse it forever)
            if _end_expired(session, job_id, attempt, owner, now, JobStatus.CANCELLED, None):
                result.cancelled.append(job_id)
        elif attempt < max_attempts:
            if _requeue_expired(session, job_id, attempt, owner, now):
                result.requeued.append(job_id)
                # Its worker stopped renewing: no new job goes there until it beats again.
                presume_lost(session, owner, now)
                release(session, job_id)
        elif _end_expired(
            session, job_id, attempt, owner, now, JobStatus.FAILED, FailureReason.WORKER_LOST
        ):
            result.worker_lost.append(job_id)
    result.queue_timeouts = _queue_timeouts(session, now)
    return result


def _expired(
    job_id: uuid.UUID, attempt: int, owner: str | None, now: datetime
) -> ColumnElement[bool]:
    # The same attempt, still expired: a heartbeat that landed meanwhile wins.
    return and_(
        Job.id == job_id,
        Job.attempt == attempt,
        Job.lease_owner == owner,
        Job.status == JobStatus.RUNNING,
        Job.lease_expires_at < now,
    )


def _requeue_expired(
    session: Session, job_id: uuid.UUID, attempt: int, owner: str | None, now: datetime
) -> bool:
    done = session.execute(
        update(Job)
        .where(_expired(job_id, attempt, owner, now))
        .values(
            status=JobStatus.QUEUED,
            lease_owner=None,
            lease_expires_at=None,
            dispatched_at=None,
            updated_at=now,
        )
        .returning(Job.id)
    ).scalar_one_or_none()
    if done is None:
        return False
    add_event(
        session,
        job_id,
        attempt,
        "status",
        JobStatus.QUEUED,
        reason=FailureReason.WORKER_LOST,
        message=f"lease expired (worker {owner}); retrying as attempt {attempt + 1}",
    )
    return True


def _end_expired(
    session: Session,
    job_id: uuid.UUID,
    attempt: int,
    owner: str | None,
    now: datetime,
    status: JobStatus,
    reason: FailureReason | None,
) -> bool:
    if reason is not None:
        message = f"lease expired (worker {owner}) on attempt {attempt}, the last one allowed"
    else:
        message = f"lease expired (worker {owner}) while a cancel was pending"
    done = session.execute(
        update(Job)
        .where(_expired(job_id, attempt, owner, now))
        .values(
            status=status,
            failure_reason=reason,
            failure_message=message if reason else None,
            lease_owner=None,
            lease_expires_at=None,
            finished_at=now,
            updated_at=now,
        )
        .returning(Job.id)
    ).scalar_one_or_none()
    if done is None:
        return False
    detail = {"reason": reason, "message": message} if reason else {"message": message}
    add_event(session, job_id, attempt, "status", status, **detail)
    return True


def _queue_timeouts(session: Session, now: datetime) -> list[uuid.UUID]:
    """Never-started jobs waiting longer than their resources.max_queue_s fail as `timeout`."""
    waiting = session.execute(
        select(Job.id, Job.created_at, Job.resolved_spec).where(
            Job.status == JobStatus.QUEUED, Job.attempt == 0
        )
    ).all()
    timed_out = []
    for job_id, created_at, resolved in waiting:
        limit = float(resolved.get("resources", {}).get("max_queue_s", 0) or 0)
        if not limit or created_at + timedelta(seconds=limit) > now:
            continue
        message = f"no worker started the job within resources.max_queue_s = {limit:g} s"
        done = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED, Job.attempt == 0)
            .values(
                status=JobStatus.FAILED,
                failure_reason=FailureReason.TIMEOUT,
                failure_message=message,
                finished_at=now,
                updated_at=now,
            )
            .returning(Job.id)
        ).scalar_one_or_none()
        if done is not None:
            add_event(
                session,
                job_id,
                0,
                "status",
                JobStatus.FAILED,
                reason=FailureReason.TIMEOUT,
                message=message,
            )
            timed_out.append(job_id)
    return timed_out
