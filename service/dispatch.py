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

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from models import Job, Placement, Worker
from models.base import utcnow
from service.db import SessionFactory, transaction
from service.queue import JobQueue
from service.reaper import Reaped, reap
from service.scheduler import Policy, dispatch, has_live_workers
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
    placed_only: bool = False,
) -> list[uuid.UUID]:
    """Mark and return the pool's queued jobs due for a (re)send; concurrent dispatchers split
    them. Only the pool's own: a worker of another pool (another artifact store, other devices)
    must never be sent a job it cannot run. With placed_only (the pool has live workers), only
    jobs placed on a worker: the others wait for the scheduler to place them."""
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
            *([Job.id.in_(select(Placement.job_id))] if placed_only else []),
        )
        .values(dispatched_at=now)
        .returning(Job.id)
    ).scalars()
    return list(rows)


def worker_queues(session: Session, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The own queue of the worker each placed job was given."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(Placement.job_id, Worker.queue)
        .join(Worker, Worker.id == Placement.worker_id)
        .where(Placement.job_id.in_(job_ids))
    ).all()
    return dict(rows)


def place_and_send(factory: SessionFactory, queue: JobQueue, settings: Settings) -> list[uuid.UUID]:
    """A scheduling pass (service/scheduler.py), then each placed job to its worker's queue.

    A job whose message cannot be sent (broker down) keeps its place; the resend of `take_due`
    delivers it later.
    """
    now = utcnow()
    with transaction(factory) as session:
        decisions = dispatch(session, now, Policy.of(settings), settings.task_queue)
    sent = [d.job_id for d in decisions if queue.enqueue(d.job_id, d.queue)]
    if sent:
        with transaction(factory) as session:
            mark_dispatched(session, sent, now)
    return sent


def publish_job(session: Session, queue: JobQueue, settings: Settings, job_id: uuid.UUID) -> None:
    """Right after a submission: a scheduling pass sends every job that can start now to its
    worker. If no worker of the pool is up, the new job goes to the pool's shared queue (the
    first worker to come takes it); otherwise an unplaced job waits for a place. After the
    commit: the database is the source of truth, and a broker that is down loses nothing."""
    now = utcnow()
    policy = Policy.of(settings)
    decisions = dispatch(session, now, policy, settings.task_queue)
    session.commit()
    sent = [d.job_id for d in decisions if queue.enqueue(d.job_id, d.queue)]
    placed = any(d.job_id == job_id for d in decisions)
    nobody = not placed and not has_live_workers(session, settings.task_queue, now, policy)
    if nobody and queue.enqueue(job_id):
        sent.append(job_id)
    mark_dispatched(session, sent, now)
    session.commit()


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
    tick = Tick(reaped)
    tick.sent += place_and_send(factory, queue, settings)
    with transaction(factory) as session:
        live = has_live_workers(session, settings.task_queue, utcnow(), Policy.of(settings))
        due = take_due(
            session,
            pool=settings.task_queue,
            grace_s=settings.dispatch_grace_seconds,
            redispatch_s=settings.redispatch_seconds,
            placed_only=live,
        )
        targets = worker_queues(session, due)
    for job_id in due:
        sent = queue.enqueue(job_id, targets.get(job_id))
        (tick.sent if sent else tick.unsent).append(job_id)
    if tick.unsent:  # the broker is down: try these again at the next tick
        with transaction(factory) as session:
            mark_dispatched(session, tick.unsent, None)
    return tick
