"""GET /v1/jobs/{id}/events: Server-Sent Events of status changes and metric batches.

The database is polled (no broker needed); every event's `id` is a cursor, so a client that
reconnects with `Last-Event-ID` (or `?last_event_id=` where headers cannot be set) gets exactly
what it missed. The stream ends after the job's final status; comments keep idle proxies open.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from api.deps import SessionDep, TeamDep
from service import jobs as job_service
from service.db import SessionFactory
from service.events import Cursor, Poll, poll

router = APIRouter(prefix="/v1/jobs", tags=["events"])

POLL_SECONDS = 0.25  # how often an idle stream looks at the database
PING_SECONDS = 15  # keep-alive comment interval
RETRY_MS = 1000  # how long a browser's EventSource waits before reconnecting


def _poll(factory: SessionFactory, job_id: uuid.UUID, cursor: Cursor) -> Poll:
    with factory() as session:
        return poll(session, job_id, cursor)


@router.get("/{job_id}/events", response_class=EventSourceResponse)
async def stream_events(
    job_id: uuid.UUID,
    request: Request,
    team: TeamDep,
    session: SessionDep,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[
        str | None, Query(alias="last_event_id", description="a cursor, as Last-Event-ID")
    ] = None,
) -> EventSourceResponse:
    job_service.get_job(session, job_id, team.id)  # another team's job is not found
    session.close()  # the stream takes short sessions of its own; hold no connection
    try:
        start = Cursor.parse(last_event_id or after)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    factory: SessionFactory = request.app.state.session_factory

    async def stream() -> AsyncIterator[ServerSentEvent]:
        cursor = start
        while True:
            result = await run_in_threadpool(_poll, factory, job_id, cursor)
            for item in result.items:
                yield ServerSentEvent(
                    json.dumps(item.data), event=item.event, id=str(item.cursor), retry=RETRY_MS
                )
            cursor = result.cursor
            if result.finished:
                return
            if not result.items:
                await anyio.sleep(POLL_SECONDS)

    return EventSourceResponse(stream(), ping=PING_SECONDS)
