"""Scheduling in the database: which queued job runs next, and on which worker.

Order: effective priority (a job waiting past the starvation threshold is promoted one level),
then fair share (the team with the fewest weighted device-seconds over a sliding window, then
the fewest devices in use), then submission time. A job that does not fit yet does not block
smaller ones behind it (backfill); promotion keeps it from waiting forever behind higher ranks,
and a promoted GPU job that still does not fit has GPUs held for it: those of the worker nearest
to fitting it, where nothing ranked below it starts until it does (a reservation), so a stream
of small jobs cannot keep a big one out for ever.

Placement is safe under races: one dispatcher at a time decides (a PostgreSQL advisory lock;
SQLite serialises writers), and the primary keys of `placements` (worker, slot) and
`gpu_allocations` (worker, gpu) refuse a double booking whatever happens.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, text
from sqlalchemy.orm import Session

from models import GpuAllocation, Job, Placement, Team, TeamQuota, Worker
from service.settings import Settings
from service.states import JobStatus

PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2}
# Any constant: the key of the advisory lock that makes dispatch passes take turns.
DISPATCH_LOCK = 0x5245_4731
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


@dataclass(frozen=True)
class Policy:
    fair_share_window_s: float = 3600.0
    starvation_s: float = 1800.0
    worker_ttl_s: float = 30.0
    # A job published to the pool's shared queue (no worker was up) is left to whichever worker
    # takes that message first, until the message is this old.
    shared_message_s: float = 300.0

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            settings.fair_share_window_seconds,
            settings.starvation_seconds,
            settings.worker_ttl_seconds,
            settings.redispatch_seconds,
        )


class QuotaExceeded(Exception):
    """A submission over the team's queued-jobs limit (HTTP 429)."""


class PriorityNotAllowed(Exception):
    """A priority above what the caller's key may use (HTTP 403)."""


class NoWorkerFits(ValueError):
    """More GPUs asked than any worker has (HTTP 422)."""


@dataclass(frozen=True)
class Decision:
    job_id: uuid.UUID
    worker_id: str
    queue: str
    slot: int
    gpus: tuple[int, ...]


# --- workers ------------------------------------------------------------------------------


def register_worker(
    session: Session,
    worker_id: str,
    *,
    host: str,
    gpus: Sequence[int],
    slots: int,
    pool: str,
    now: datetime,
) -> Worker:
    """Create or refresh the worker's row (a restarted worker keeps its id and queue)."""
    worker = session.get(Worker, worker_id)
    if worker is None:
        worker = Worker(id=worker_id, started_at=now)
        session.add(worker)
    worker.host = host
    worker.gpus = sorted(set(gpus))
    worker.slots = slots
    worker.pool = pool
    worker.queue = worker_queue(pool, worker_id)
    worker.last_seen_at = now
    session.flush()
    return worker


def worker_queue(pool: str, worker_id: str) -> str:
    """The worker's own Celery queue: the dispatcher sends it exactly the jobs placed on it."""
    return f"{pool}.worker.{worker_id}"


def beat(session: Session, worker_id: str, now: datetime) -> bool:
    """Record that the worker is alive; False if its row is gone (register again)."""
    worker = session.get(Worker, worker_id)
    if worker is None:
        return False
    worker.last_seen_at = now
    return True


def presume_lost(session: Session, worker_id: str | None, now: datetime) -> None:
    """A worker whose job lease expired is taken out of placement until its next heartbeat
    (a worker that is alive after all beats again within a third of the TTL)."""
    if worker_id is None:
        return
    worker = session.get(Worker, worker_id)
    if worker is not None:
        worker.last_seen_at = min(worker.last_seen_at, now - timedelta(days=1))


def is_live(worker: Worker, now: datetime, policy: Policy) -> bool:
    return now - worker.last_seen_at <= timedelta(seconds=policy.worker_ttl_s)


def release(session: Session, job_id: uuid.UUID) -> None:
    """Free the job's slot and GPUs (it ended, or it goes back to the queue)."""
    session.execute(delete(GpuAllocation).where(GpuAllocation.job_id == job_id))
    session.execute(delete(Placement).where(Placement.job_id == job_id))


def placement_of(session: Session, job_id: uuid.UUID) -> Placement | None:
    return session.get(Placement, job_id)


# --- submission checks ----------------------------------------------------------------------


def check_submission(
    session: Session, team_id: uuid.UUID, *, gpus: int, priority: str, key_max_priority: str
) -> None:
    """Refuse, before anything is stored, what could never run or is over the team's limits."""
    if PRIORITY_RANK[priority] > PRIORITY_RANK.get(key_max_priority, 1):
        raise PriorityNotAllowed(
            f"priority {priority!r} is not allowed for this API key (its highest is "
            f"{key_max_priority!r}); ask an administrator: "
            "`python -m service.admin set-priority KEY_PREFIX high`"
        )
    if gpus:
        largest = max((len(w.gpus) for w in session.scalars(select(Worker))), default=0)
        if gpus > largest:
            raise NoWorkerFits(
                f"resources.gpus: {gpus} GPUs asked but the largest worker has {largest}; "
                f"ask for at most {largest} (a job runs on one worker)"
            )
    quota = session.get(TeamQuota, team_id)
    if quota is not None and quota.max_queued_jobs is not None:
        queued = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.team_id == team_id, Job.status == JobStatus.QUEUED)
        )
        if (queued or 0) >= quota.max_queued_jobs:
            raise QuotaExceeded(
                f"the team already has {queued} queued jobs and its limit is "
                f"{quota.max_queued_jobs} (max_queued_jobs); wait for some to start or cancel some"
            )


# --- usage and ordering ---------------------------------------------------------------------


def devices(job_gpus: int) -> int:
    """What a job counts for in fair share: its GPUs, or one device for a CPU job."""
    return max(job_gpus, 1)


def team_usage(session: Session, now: datetime, policy: Policy) -> dict[uuid.UUID, float]:
    """Device-seconds of every team's jobs inside the sliding window (running ones up to now)."""
    start = now - timedelta(seconds=policy.fair_share_window_s)
    rows = session.execute(
        select(Job.team_id, Job.gpus, Job.started_at, Job.finished_at).where(
            Job.started_at.is_not(None),
            or_(Job.finished_at.is_(None), Job.finished_at > start),
        )
    )
    usage: dict[uuid.UUID, float] = defaultdict(float)
    for team_id, gpus, started, finished in rows:
        if started is None:  # excluded by the query; narrows the type
            continue
        end = min(finished or now, now)
        begin = max(started, start)
        if end > begin:
            usage[team_id] += devices(gpus) * (end - begin).total_seconds()
    return usage


@dataclass
class _TeamState:
    weight: float = 1.0
    usage: float = 0.0
    running_jobs: int = 0
    devices_in_use: int = 0
    gpus_in_use: int = 0
    max_running_jobs: int | None = None
    max_gpus: int | None = None

    def over_quota(self, job_gpus: int) -> str | None:
        if self.max_running_jobs is not None and self.running_jobs >= self.max_running_jobs:
            return (
                f"team quota reached: {self.running_jobs} of {self.max_running_jobs} "
                "running jobs (max_running_jobs)"
            )
        if self.max_gpus is not None and self.gpus_in_use + job_gpus > self.max_gpus:
            return (
                f"team quota reached: {self.gpus_in_use} GPUs in use + {job_gpus} asked > "
                f"{self.max_gpus} (max_gpus)"
            )
        return None


def _team_states(session: Session, now: datetime, policy: Policy) -> dict[uuid.UUID, _TeamState]:
    states: dict[uuid.UUID, _TeamState] = defaultdict(_TeamState)
    for quota in session.scalars(select(TeamQuota)):
        state = states[quota.team_id]
        state.weight = quota.weight if quota.weight > 0 else 1.0
        state.max_running_jobs = quota.max_running_jobs
        state.max_gpus = quota.max_gpus
    for team_id, used in team_usage(session, now, policy).items():
        states[team_id].usage = used
    # Jobs holding a place (placed and waiting to start, or running) count against the quota.
    held = session.execute(
        select(Job.team_id, Job.gpus)
        .join(Placement, Placement.job_id == Job.id)
        .where(Job.status.in_(ACTIVE))
    ).all()
    running_unplaced = session.execute(
        select(Job.team_id, Job.gpus).where(
            Job.status == JobStatus.RUNNING,
            ~select(Placement.job_id).where(Placement.job_id == Job.id).exists(),
        )
    ).all()
    for team_id, gpus in [*held, *running_unplaced]:
        state = states[team_id]
        state.running_jobs += 1
        state.devices_in_use += devices(gpus)
        state.gpus_in_use += gpus
    return states


def starving(job: Job, now: datetime, policy: Policy) -> bool:
    return (now - job.created_at).total_seconds() > policy.starvation_s


def effective_priority(job: Job, now: datetime, policy: Policy) -> int:
    """The job's priority, one level higher once it has waited past the starvation threshold."""
    rank = PRIORITY_RANK.get(job.priority, 1)
    return rank + 1 if starving(job, now, policy) else rank


def _rank_key(
    job: Job, teams: dict[uuid.UUID, _TeamState], now: datetime, policy: Policy
) -> tuple[Any, ...]:
    team = teams[job.team_id]
    return (
        -effective_priority(job, now, policy),
        team.usage / team.weight,
        team.devices_in_use / team.weight,
        job.created_at,
        str(job.id),
    )


def _waiting(session: Session, pool: str) -> list[Job]:
    """The pool's queued jobs not yet placed (nor cancelled while queued)."""
    return list(
        session.scalars(
            select(Job).where(
                Job.status == JobStatus.QUEUED,
                Job.pool == pool,
                Job.cancel_requested.is_(False),
                ~select(Placement.job_id).where(Placement.job_id == Job.id).exists(),
            )
        )
    )


def _in_shared_queue(job: Job, now: datetime, policy: Policy) -> bool:
    """Unplaced but sent to the pool's shared queue lately: a worker will take that message."""
    sent = job.dispatched_at
    return sent is not None and now - sent < timedelta(seconds=policy.shared_message_s)


# --- free capacity --------------------------------------------------------------------------


@dataclass
class _Capacity:
    worker: Worker
    free_slots: list[int] = field(default_factory=list)
    free_gpus: list[int] = field(default_factory=list)

    def fits(self, gpus: int) -> bool:
        return bool(self.free_slots) and len(self.free_gpus) >= gpus


def _capacities(session: Session, workers: Iterable[Worker]) -> list[_Capacity]:
    used_slots: dict[str, set[int]] = defaultdict(set)
    for worker_id, slot in session.execute(select(Placement.worker_id, Placement.slot)):
        used_slots[worker_id].add(slot)
    used_gpus: dict[str, set[int]] = defaultdict(set)  # by host: workers may share GPUs
    for host, gpu in session.execute(select(GpuAllocation.host, GpuAllocation.gpu)):
        used_gpus[host].add(gpu)
    return [
        _Capacity(
            worker,
            [s for s in range(worker.slots) if s not in used_slots[worker.id]],
            [g for g in worker.gpus if g not in used_gpus[worker.host]],
        )
        for worker in workers
    ]


def _best_fit(capacities: list[_Capacity], gpus: int) -> _Capacity | None:
    """The worker that fits with the fewest GPUs left over (keeps big workers for big jobs)."""
    fitting = [c for c in capacities if c.fits(gpus)]
    if not fitting:
        return None
    return min(fitting, key=lambda c: (len(c.free_gpus) - gpus, len(c.free_slots), c.worker.id))


HeldGpus = set[tuple[str, int]]  # (host, gpu)


def _hold_for(job: Job, capacities: list[_Capacity]) -> tuple[Worker | None, HeldGpus]:
    """The worker a starving job waits on, the one big enough with the most GPUs free now, and
    its GPUs to hold; nothing when no live worker is big enough."""
    able = [c for c in capacities if len(c.worker.gpus) >= job.gpus and c.worker.slots >= 1]
    if not able:
        return None, set()
    nearest = max(able, key=lambda c: (len(c.free_gpus), c.worker.id))
    return nearest.worker, {(nearest.worker.host, g) for g in nearest.worker.gpus}


def _unheld(capacity: _Capacity, held: HeldGpus) -> list[int]:
    return [g for g in capacity.free_gpus if (capacity.worker.host, g) not in held]


def _without(capacities: list[_Capacity], held: HeldGpus) -> list[_Capacity]:
    """The capacities with held GPUs taken out; the slot lists stay shared with the originals."""
    if not held:
        return capacities
    return [_Capacity(c.worker, c.free_slots, _unheld(c, held)) for c in capacities]


# --- the dispatch pass ----------------------------------------------------------------------


def _take_turn(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DISPATCH_LOCK})


def release_stale(session: Session, now: datetime, policy: Policy) -> None:
    """Free places held by ended jobs, and queued jobs' places on workers that went away."""
    ended = select(Job.id).where(Job.status.not_in(ACTIVE))
    session.execute(delete(GpuAllocation).where(GpuAllocation.job_id.in_(ended)))
    session.execute(delete(Placement).where(Placement.job_id.in_(ended)))
    dead = [w.id for w in session.scalars(select(Worker)) if not is_live(w, now, policy)]
    if dead:
        queued = select(Job.id).where(Job.status == JobStatus.QUEUED)
        for table in (GpuAllocation, Placement):
            session.execute(
                delete(table).where(table.worker_id.in_(dead), table.job_id.in_(queued))
            )


def _live_workers(session: Session, pool: str, now: datetime, policy: Policy) -> list[Worker]:
    workers = session.scalars(select(Worker).where(Worker.pool == pool))
    return [w for w in workers if is_live(w, now, policy)]


def _book(
    session: Session, job: Job, place: _Capacity, capacities: list[_Capacity], team: _TeamState
) -> Decision:
    """Give the job a slot and GPUs of `place`'s worker (and take them off the host's others)."""
    slot = place.free_slots.pop(0)
    gpus = tuple(place.free_gpus[: job.gpus])
    worker = place.worker
    for other in capacities:
        if other.worker.host == worker.host:
            other.free_gpus = [g for g in other.free_gpus if g not in gpus]
    session.add(Placement(job_id=job.id, worker_id=worker.id, slot=slot, gpus=gpus))
    for gpu in gpus:
        session.add(GpuAllocation(host=worker.host, gpu=gpu, worker_id=worker.id, job_id=job.id))
    job.worker_id = worker.id
    team.running_jobs += 1
    team.devices_in_use += devices(job.gpus)
    team.gpus_in_use += job.gpus
    return Decision(job.id, worker.id, worker.queue, slot, gpus)


def has_live_workers(session: Session, pool: str, now: datetime, policy: Policy) -> bool:
    return bool(_live_workers(session, pool, now, policy))


def take_for_worker(
    session: Session, job_id: uuid.UUID, worker_id: str, now: datetime, policy: Policy
) -> Placement | None:
    """The job's place on this worker before it claims the job: the one the dispatcher gave it,
    or (a message from the pool's shared queue) one booked now if the job fits here under the
    same quotas. None: the job is placed elsewhere, does not fit, or is not waiting."""
    _take_turn(session)
    placement = session.get(Placement, job_id)
    if placement is not None:
        return placement if placement.worker_id == worker_id else None
    job = session.get(Job, job_id)
    worker = session.get(Worker, worker_id)
    if job is None or worker is None or job.status != JobStatus.QUEUED or job.pool != worker.pool:
        return None
    release_stale(session, now, policy)
    (capacity,) = _capacities(session, [worker])
    team = _team_states(session, now, policy)[job.team_id]
    if team.over_quota(job.gpus) or not capacity.fits(job.gpus):
        return None
    _book(session, job, capacity, [capacity], team)
    session.flush()
    return session.get(Placement, job_id)


def dispatch(session: Session, now: datetime, policy: Policy, pool: str) -> list[Decision]:
    """Place every queued job of the pool that can run now on one of the pool's live workers.

    The caller commits, then sends each decision to its worker's own queue.
    """
    _take_turn(session)
    release_stale(session, now, policy)
    capacities = _capacities(session, _live_workers(session, pool, now, policy))
    teams = _team_states(session, now, policy)
    waiting = [j for j in _waiting(session, pool) if not _in_shared_queue(j, now, policy)]
    decisions: list[Decision] = []
    while waiting and any(c.free_slots for c in capacities):
        waiting.sort(key=lambda j: _rank_key(j, teams, now, policy))
        held: HeldGpus = set()  # for starving jobs ranked above the one being placed
        for job in waiting:
            team = teams[job.team_id]
            if team.over_quota(job.gpus):
                continue
            place = _best_fit(_without(capacities, held), job.gpus)
            if place is None:
                if job.gpus and starving(job, now, policy):
                    held |= _hold_for(job, capacities)[1]
                continue
            decisions.append(_book(session, job, place, capacities, team))
            waiting.remove(job)
            break  # re-rank: the team just placed now holds more
        else:
            break  # nothing left fits
    session.flush()
    return decisions


# --- explanations ---------------------------------------------------------------------------


def why_pending(session: Session, job: Job, now: datetime, policy: Policy) -> dict[str, Any]:
    """Where a queued job stands and what it waits for, in words a member can act on."""
    if job.status != JobStatus.QUEUED:
        return {}
    placement = session.get(Placement, job.id)
    if placement is not None:
        return {
            "position": 0,
            "waiting_for": [
                f"worker {placement.worker_id} to start it (placed, slot "
                f"{placement.slot}, GPUs {list(placement.gpus) or 'none'})"
            ],
        }
    teams = _team_states(session, now, policy)
    waiting = sorted(_waiting(session, job.pool), key=lambda j: _rank_key(j, teams, now, policy))
    position = next((i for i, j in enumerate(waiting) if j.id == job.id), None)
    if position is None:  # claimed (or cancelled) since it was read: no longer pending
        return {}
    reasons: list[str] = []
    quota = teams[job.team_id].over_quota(job.gpus)
    if quota:
        reasons.append(quota)
    live = _live_workers(session, job.pool, now, policy)
    capacities = _capacities(session, live)
    if not live:
        reasons.append("no worker is running")
    elif not any(c.fits(job.gpus) for c in capacities):
        nearest = _hold_for(job, capacities)[0] if starving(job, now, policy) else None
        if job.gpus and nearest is not None:
            reasons.append(
                f"worker {nearest.id} to free {job.gpus} GPUs (held for this job, which has "
                "waited long: nothing new starts on them)"
            )
        elif job.gpus:
            reasons.append(f"no worker with {job.gpus} free GPUs")
        else:
            reasons.append("no worker with a free slot")
    ahead = waiting[:position]
    if ahead:
        higher = sum(
            1
            for j in ahead
            if effective_priority(j, now, policy) > effective_priority(job, now, policy)
        )
        detail = f"{len(ahead)} job(s) ahead in the queue"
        if higher:
            detail += f" ({higher} of higher priority)"
        reasons.append(detail)
    if not reasons:
        reasons.append("the next dispatch pass (it can start now)")
    return {"position": position + 1, "waiting_for": reasons}


def cluster_view(
    session: Session, now: datetime, policy: Policy, viewer: uuid.UUID | None = None
) -> dict[str, Any]:
    """Workers, their GPUs and what runs where; each team's usage against its quota.

    With a viewer, other teams' jobs show as their team only: a team sees its own jobs.
    """
    names: dict[uuid.UUID, str] = dict(session.execute(select(Team.id, Team.name)).all())
    jobs_by_id = {
        j.id: j for j in session.scalars(select(Job).join(Placement, Placement.job_id == Job.id))
    }

    def shown(job_id: uuid.UUID, gpus: list[int]) -> dict[str, Any]:
        job = jobs_by_id[job_id]
        if viewer is not None and job.team_id != viewer:
            return {"team": names.get(job.team_id), "id": None, "name": None, "gpus": gpus}
        return {
            "team": names.get(job.team_id),
            "id": str(job.id),
            "name": job.name,
            "status": job.status,
            "gpus": gpus,
        }

    placements = [p for p in session.scalars(select(Placement)) if p.job_id in jobs_by_id]
    workers = []
    for worker in session.scalars(select(Worker).order_by(Worker.id)):
        here = [p for p in placements if p.worker_id == worker.id]
        gpu_jobs = {g: shown(p.job_id, list(p.gpus))["id"] for p in here for g in p.gpus}
        workers.append(
            {
                "id": worker.id,
                "host": worker.host,
                "pool": worker.pool,
                "live": is_live(worker, now, policy),
                "last_seen_at": worker.last_seen_at.isoformat(),
                "slots": worker.slots,
                "gpus": [
                    {"index": g, "busy": g in gpu_jobs, "job_id": gpu_jobs.get(g)}
                    for g in worker.gpus
                ],
                "jobs": [shown(p.job_id, list(p.gpus)) for p in here],
            }
        )
    teams_state = _team_states(session, now, policy)
    queued_counts: dict[uuid.UUID, int] = dict(
        session.execute(
            select(Job.team_id, func.count())
            .where(Job.status == JobStatus.QUEUED)
            .group_by(Job.team_id)
        ).all()
    )
    quotas = {q.team_id: q for q in session.scalars(select(TeamQuota))}
    teams = []
    for team_id in sorted(set(teams_state) | set(queued_counts), key=lambda t: names.get(t, "")):
        state = teams_state[team_id]
        quota = quotas.get(team_id)
        teams.append(
            {
                "team": names.get(team_id, str(team_id)),
                "running_jobs": state.running_jobs,
                "gpus_in_use": state.gpus_in_use,
                "queued_jobs": queued_counts.get(team_id, 0),
                "device_seconds_in_window": round(state.usage, 3),
                "quota": {
                    "max_running_jobs": quota.max_running_jobs if quota else None,
                    "max_gpus": quota.max_gpus if quota else None,
                    "max_queued_jobs": quota.max_queued_jobs if quota else None,
                    "weight": quota.weight if quota else 1.0,
                },
            }
        )
    return {
        "fair_share_window_s": policy.fair_share_window_s,
        "workers": workers,
        "teams": teams,
    }


def set_quota(
    session: Session,
    team: Team,
    *,
    max_running_jobs: int | None,
    max_gpus: int | None,
    max_queued_jobs: int | None,
    weight: float | None,
) -> TeamQuota:
    quota = session.get(TeamQuota, team.id)
    if quota is None:
        quota = TeamQuota(team_id=team.id, weight=1.0)
        session.add(quota)
    quota.max_running_jobs = max_running_jobs
    quota.max_gpus = max_gpus
    quota.max_queued_jobs = max_queued_jobs
    if weight is not None:
        quota.weight = weight
    session.flush()
    return quota
