"""The dispatcher: queued jobs that no worker claimed are sent to the broker (again).

The API publishes a job right after storing it, but the broker may be down then, a Redis restart
may drop its queue, and the reaper requeues jobs without a message. The database is the source of
truth: every queued job is (re)sent once it was never dispatched (after a short grace, so the
API's own publish goes first) or was dispatched long ago. A duplicate message is harmless: the
claim is a conditional UPDATE, so exactly one attempt runs.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, update
from sqlalchemy.orm import Session

from models import Job
from models.base import utcnow
from service.db import SessionFactory, transaction
from service.queue import JobQueue
from service.reaper import Reaped, reap
from service.settings import Settings
from service.states import JobStatus

log = logging.getLogger("regimen.dispatch")


def mark_dispatched(session: Session, job_ids: list[uuid.UUID], when: datetime | None) -> None:
    """Record (or, with None, forget) that these queued jobs' messages were sent."""
    if job_ids:
        session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.status == JobStatus.QUEUED)
            .values(dispatched_at=when)
        )


def take_due(
    session: Session,
    *,
    pool: str,
    grace_s: float,
    redispatch_s: float,
    now: datetime | None = None,
) -> list[uuid.UUID]:
    """Mark and return the pool's queued jobs due for a (re)send; concurrent dispatchers split
    them. Only the pool's own: a worker of another pool (another artifact store, other devices)
    must never be sent a job it cannot run."""
    now = now or utcnow()
    due = or_(
        and_(Job.dispatched_at.is_(None), Job.created_at <= now - timedelta(seconds=grace_s)),
        Job.dispatched_at <= now - timedelta(seconds=redispatch_s),
    )
    rows = session.execute(
        update(Job)
        .where(
            Job.status == JobStatus.QUEUED,
            Job.pool == pool,
            Job.cancel_requested.is_(False),
            due,
        )
        .values(dispatched_at=now)
        .returning(Job.id)
    ).scalars()
    return list(rows)


@dataclass
class Tick:
    reaped: Reaped
    sent: list[uuid.UUID] = field(default_factory=list)
    unsent: list[uuid.UUID] = field(default_factory=list)


def maintenance_tick(factory: SessionFactory, queue: JobQueue, settings: Settings) -> Tick:
    """Reap expired leases (any pool: a lease is a lease), then send the due queued jobs of this
    worker's pool (its task queue); run by each worker periodically."""
    with transaction(factory) as session:
        reaped = reap(session)
    for job_id in reaped.requeued:
        log.warning("job %s: lease expired, requeued", job_id)
    for job_id in reaped.worker_lost:
        log.warning("job %s: lease expired on its last attempt: failed (worker_lost)", job_id)
    with transaction(factory) as session:
        due = take_due(
            session,
            pool=settings.task_queue,
            grace_s=settings.dispatch_grace_seconds,
            redispatch_s=settings.redispatch_seconds,
        )
    tick = Tick(reaped)
    for job_id in due:
        (tick.sent if queue.enqueue(job_id) else tick.unsent).append(job_id)
    if tick.unsent:  # the broker is down: try these again at the next tick
        with transaction(factory) as session:
            mark_dispatched(session, tick.unsent, None)
    return tick
