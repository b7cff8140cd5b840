"""A job's live stream: status events and metric batches, read by polling the database.

Each item carries a cursor `E-S`: E the last job_events id sent, S the last metric step sent.
Both only grow, so a client reconnecting with `Last-Event-ID: E-S` gets exactly what follows.
Metric steps work as a cursor because the training sink writes all of a step's metrics, with
the progress, in one transaction, and one attempt writes steps in increasing order. A retry
rewrites steps from its checkpoint onwards; those at or below S are not sent again.

Job-event ids come from one sequence, and every writer of a job's events first updates or locks
the job's row (claim, progress and checkpoints, finish, cancel, requeue) or creates it, taking its
id only after that lock: one job's events therefore commit in id order, and a stream past id E
can never see a smaller id appear later. Keep it so when adding a kind of event.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Job, JobEvent, MetricPoint
from service.states import JobStatus


@dataclass(frozen=True)
class Cursor:
    event_id: int = 0
    step: int = 0

    def __str__(self) -> str:
        return f"{self.event_id}-{self.step}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        """The cursor in a Last-Event-ID; ValueError if it is not one of ours."""
        if not text:
            return cls()
        event_id, sep, step = text.strip().partition("-")
        if not sep or not event_id.isdigit() or not step.isdigit():
            raise ValueError(f"Last-Event-ID {text!r} is not a cursor of this stream (E-S)")
        return cls(int(event_id), int(step))


@dataclass(frozen=True)
class Item:
    """One server-sent event: its type, cursor and JSON data."""

    event: str
    cursor: Cursor
    data: dict[str, Any]


@dataclass
class Poll:
    items: list[Item] = field(default_factory=list)
    cursor: Cursor = field(default_factory=Cursor)
    finished: bool = False


def poll(session: Session, job_id: uuid.UUID, cursor: Cursor, max_steps: int = 500) -> Poll:
    """What happened after `cursor`: non-final events, then metrics, then the final status.

    Events are read before metrics: every metric written before a final status event is then
    visible to the second query, so the stream never ends with metrics unsent. The job is read
    first: if it had already ended, its final event is either below the cursor or among these.
    """
    job = session.execute(select(Job.status, Job.total_steps).where(Job.id == job_id)).one()
    events = list(
        session.scalars(
            select(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.id > cursor.event_id)
            .order_by(JobEvent.id)
        )
    )
    final = next((e for e in events if _is_final(e)), None)
    if final is not None:
        events = events[: events.index(final) + 1]
    rows = session.execute(
        select(MetricPoint.step, MetricPoint.name, MetricPoint.value)
        .where(MetricPoint.job_id == job_id, MetricPoint.step > cursor.step)
        .order_by(MetricPoint.step, MetricPoint.name)
    ).all()
    by_step: dict[int, dict[str, float]] = defaultdict(dict)
    for step, name, value in rows:
        by_step[step][name] = value
    steps = sorted(by_step)
    if final is None:
        steps = steps[:max_steps]  # a long backlog goes out in several batches

    result = Poll(cursor=cursor)
    for e in events:
        if e is not final:
            result.items.append(_event_item(e, result))
    if steps:
        result.cursor = Cursor(result.cursor.event_id, steps[-1])
        points = [{"step": s, "values": by_step[s]} for s in steps]
        data = {"points": points, "step": steps[-1], "total": job.total_steps}
        result.items.append(Item("metrics", result.cursor, data))
    if final is not None:
        result.items.append(_event_item(final, result))
        result.finished = True
    elif JobStatus(job.status).is_final and not steps:
        result.finished = True  # the final event was sent before this cursor
    return result


def _is_final(e: JobEvent) -> bool:
    return e.kind == "status" and e.status is not None and JobStatus(e.status).is_final


def _event_item(e: JobEvent, result: Poll) -> Item:
    result.cursor = Cursor(e.id, result.cursor.step)
    data = {
        "id": e.id,
        "attempt": e.attempt,
        "kind": e.kind,
        "status": e.status,
        "detail": e.detail,
        "created_at": e.created_at.isoformat(),
    }
    return Item("status" if e.kind == "status" else e.kind, result.cursor, data)
