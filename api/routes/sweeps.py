"""/v1/sweeps: create a sweep of child jobs, read its summary (best child by a metric), list."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from api.deps import KeyDep, QueueDep, SessionDep, SettingsDep, StoreDep, TeamDep
from api.routes.jobs import publish
from service import sweeps as sweep_service
from service.sweeps import SweepRequest

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])


class Child(BaseModel):
    job_id: uuid.UUID
    name: str
    status: str
    overrides: dict[str, Any]
    value: float | None
    failure_reason: str | None


class SweepBrief(BaseModel):
    id: uuid.UUID
    name: str
    method: str
    metric: str
    goal: str
    created_at: datetime
    counts: dict[str, int]
    done: bool
    best: Child | None


class SweepOut(SweepBrief):
    children: list[Child]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SweepOut)
async def create_sweep(
    body: SweepRequest,
    key: KeyDep,
    session: SessionDep,
    settings: SettingsDep,
    queue: QueueDep,
    store: StoreDep,
) -> SweepOut:
    created = await run_in_threadpool(
        functools.partial(
            sweep_service.create_sweep,
            session,
            key.team_id,
            body,
            store,
            max_priority=key.max_priority,
            pool=settings.task_queue,
        )
    )
    session.commit()
    for job in created.jobs:
        await publish(session, queue, settings, job.id)  # after the commit, as POST /v1/jobs does
    return SweepOut.model_validate(sweep_service.summarize(created.sweep, created.jobs))


@router.get("/{sweep_id}", response_model=SweepOut)
def get_sweep(sweep_id: uuid.UUID, team: TeamDep, session: SessionDep) -> SweepOut:
    try:
        sweep = sweep_service.get_sweep(session, sweep_id, team.id)
    except sweep_service.SweepNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    jobs = sweep_service.children_of(session, sweep)
    return SweepOut.model_validate(sweep_service.summarize(sweep, jobs))


@router.get("", response_model=list[SweepBrief])
def list_sweeps(
    team: TeamDep,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1)] = 50,
) -> list[SweepBrief]:
    sweeps = sweep_service.list_sweeps(session, team.id, min(limit, settings.max_page_size))
    return [
        SweepBrief.model_validate(sweep_service.summarize(s, sweep_service.children_of(session, s)))
        for s in sweeps
    ]
