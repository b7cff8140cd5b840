"""The scheduler on the real PostgreSQL: placement, quotas, priorities, fair share, races.

Each test gets its own freshly migrated database: the dispatcher looks at every queued job and
every worker, so tests must not see each other's.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import GpuAllocation, Job, Placement, TeamQuota
from models.base import utcnow
from service.auth import get_or_create_team
from service.db import SessionFactory, make_engine, make_session_factory, transaction
from service.jobs import submit_job
from service.migrate import upgrade
from service.scheduler import (
    NoWorkerFits,
    Policy,
    PriorityNotAllowed,
    QuotaExceeded,
    beat,
    check_submission,
    cluster_view,
    dispatch,
    register_worker,
    set_quota,
    why_pending,
)
from service.settings import Settings
from tests.support.services import temporary_database

POLICY = Policy(fair_share_window_s=3600, starvation_s=600, worker_ttl_s=30)
SPEC: dict[str, Any] = {
    "data": {"name": "digits"},
    "model": {"name": "mlp", "hidden": [8]},
    "optimizer": {"name": "sgd", "lr": 0.1},
    "train": {"steps": 2},
}


@pytest.fixture
def factory(postgres_base_url: str) -> Iterator[SessionFactory]:
    with temporary_database(postgres_base_url, prefix="regimen_sched") as url:
        engine = make_engine(Settings(_env_file=None, database_url=url))
        upgrade(engine)
        try:
            yield make_session_factory(engine)
        finally:
            engine.dispose()


def submit(
    session: Session, team: str, *, gpus: int = 1, priority: str = "normal", at: datetime
) -> Job:
    spec = {**SPEC, "resources": {"gpus": gpus, "priority": priority}}
    team_id = get_or_create_team(session, team).id
    job = submit_job(session, team_id=team_id, raw_spec=spec, max_priority="high").job
    job.created_at = at
    session.flush()
    return job


def add_worker(
    session: Session, name: str, gpus: list[int], now: datetime, slots: int = 0, host: str = ""
) -> None:
    register_worker(
        session,
        name,
        host=host or f"host-{name}",
        gpus=gpus,
        slots=slots or max(1, len(gpus)),
        pool="regimen",
        now=now,
    )


def start(session: Session, job_id: uuid.UUID, now: datetime) -> None:
    job = session.get(Job, job_id)
    assert job is not None
    job.status, job.started_at, job.attempt = "running", now, 1


def end(session: Session, job_id: uuid.UUID, now: datetime) -> None:
    job = session.get(Job, job_id)
    assert job is not None
    job.status, job.finished_at = "succeeded", now


def test_jobs_land_on_workers_with_enough_free_gpus(factory: SessionFactory) -> None:
    now = utcnow()
    with transaction(factory) as s:
        add_worker(s, "w0", [0], now)
        add_worker(s, "w1", [1], now)
        add_worker(s, "big", [0, 1, 2, 3], now)
        four = submit(s, "t", gpus=4, at=now)
        two = submit(s, "t", gpus=2, at=now + timedelta(seconds=1))
        one = submit(s, "t", gpus=1, at=now + timedelta(seconds=2))
        decisions = {d.job_id: d for d in dispatch(s, now, POLICY, "regimen")}
    assert decisions[four.id].worker_id == "big" and decisions[four.id].gpus == (0, 1, 2, 3)
    # The big worker is full: the 2-GPU job waits; the 1-GPU job takes a small worker.
    assert two.id not in decisions
    assert decisions[one.id].worker_id in {"w0", "w1"}
    with transaction(factory) as s:
        job = s.get(Job, two.id)
        assert job is not None
        assert why_pending(s, job, now, POLICY)["waiting_for"][0] == "no worker with 2 free GPUs"
        # The 4-GPU job ends: the 2-GPU job gets two GPUs of the big worker.
        end(s, four.id, now)
        again = dispatch(s, now, POLICY, "regimen")
    assert [(d.job_id, d.worker_id, d.gpus) for d in again] == [(two.id, "big", (0, 1))]


def test_best_fit_keeps_the_big_worker_for_big_jobs(factory: SessionFactory) -> None:
    now = utcnow()
    with transaction(factory) as s:
        add_worker(s, "big", [0, 1, 2, 3], now)
        add_worker(s, "small", [0], now)
        one = submit(s, "t", gpus=1, at=now)
        decisions = dispatch(s, now, POLICY, "regimen")
    assert [(d.job_id, d.worker_id) for d in decisions] == [(one.id, "small")]


def test_cpu_jobs_take_slots(factory: SessionFactory) -> None:
    now = utcnow()
    with transaction(factory) as s:
        add_worker(s, "cpu", [], now, slots=2)
        jobs = [submit(s, "t", gpus=0, at=now + timedelta(seconds=i)) for i in range(3)]
        decisions = dispatch(s, now, POLICY, "regimen")
        assert [d.job_id for d in decisions] == [jobs[0].id, jobs[1].id]
        assert sorted(d.slot for d in decisions) == [0, 1]
        waiting = s.get(Job, jobs[2].id)
        assert waiting is not None
        assert why_pending(s, waiting, now, POLICY) == {
            "position": 1,
            "waiting_for": ["no worker with a free slot"],
        }


def test_submission_checks(factory: SessionFactory) -> None:
    now = utcnow()
    with transaction(factory) as s:
        add_worker(s, "w", [0, 1], now)
        team = get_or_create_team(s, "t")
        with pytest.raises(NoWorkerFits, match="4 GPUs asked but the largest worker has 2"):
            check_submission(s, team.id, gpus=4, priority="normal", key_max_priority="normal")
        with pytest.raises(PriorityNotAllowed, match="'high' is not allowed"):
            check_submission(s, team.id, gpus=1, priority="high", key_max_priority="normal")
        check_submission(s, team.id, gpus=1, priority="high", key_max_priority="high")
        set_quota(s, team, max_running_jobs=None, max_gpus=None, max_queued_jobs=2, weight=None)
        submit(s, "t", at=now)
        check_submission(s, team.id, gpus=1, priority="normal", key_max_priority="normal")
        submit(s, "t", at=now)
        with pytest.raises(QuotaExceeded, match="limit is 2 \\(max_queued_jobs\\)"):
            check_submission(s, team.id, gpus=1, priority="normal", key_max_priority="normal")


def test_over_max_running_waits_and_says_so(factory: SessionFactory) -> None:
    now = utcnow()
    with transaction(factory) as s:
        add_worker(s, "w", [0, 1, 2, 3], now)
        team = get_or_create_team(s, "t")
        set_quota(s, team, max_running_jobs=1, max_gpus=None, max_queued_jobs=None, weight=None)
        first = submit(s, "t", at=now)
        second = submit(s, "t", at=now + timedelta(seconds=1))
        assert [d.job_id for d in dispatch(s, now, POLICY, "regimen")] == [first.id]
        waiting = s.get(Job, second.id)
        assert waiting is not None
        reasons = why_pending(s, waiting, now, POLICY)["waiting_for"]
        assert reasons == ["team quota reached: 1 of 1 running jobs (max_running_jobs)"]
        set_quota(s, team, max_running_jobs=None, max_gpus=2, max_queued_jobs=None, weight=None)
        big = submit(s, "t", gpus=2, at=now + timedelta(seconds=2))
        decided = [d.job_id for d in dispatch(s, now, POLICY, "regimen")]
        assert decided == [second.id]  # 1 + 1 GPUs fit the limit of 2; the 2-GPU job does not
        pending = s.get(Job, big.id)
        assert pending is not None
        assert (
            "2 GPUs in use + 2 asked > 2 (max_gpus)"
            in why_pending(s, pending, now, POLICY)["waiting_for"][0]
        )


def test_priority_then_starvation_promotion(factory: SessionFactory) -> None:
    now = utcnow()
    with transaction(factory) as s:
        add_worker(s, "w", [0], now)
        low_old = submit(s, "a", priority="low", at=now - timedelta(seconds=60))
        normal = submit(s, "b", priority="normal", at=now - timedelta(seconds=30))
        high = submit(s, "c", priority="high", at=now)
        order = []
        for _ in range(3):
            (decision,) = dispatch(s, now, POLICY, "regimen")
            order.append(decision.job_id)
            end(s, decision.job_id, now)
    assert order == [high.id, normal.id, low_old.id]

    with transaction(factory) as s:
        # A low job waiting past the threshold is promoted above a fresh normal one.
        starving = submit(s, "a", priority="low", at=now - timedelta(seconds=601))
        fresh = submit(s, "b", priority="normal", at=now)
        job = s.get(Job, starving.id)
        assert job is not None
        assert why_pending(s, job, now, POLICY)["position"] == 1
        (decision,) = dispatch(s, now, POLICY, "regimen")
    assert decision.job_id == starving.id and fresh.id != starving.id


def test_a_starving_big_job_has_gpus_held_so_small_ones_cannot_keep_it_out(
    factory: SessionFactory,
) -> None:
    now = utcnow()
    with transaction(factory) as s:
        add_worker(s, "big", [0, 1, 2, 3], now)
        for _ in range(3):
            submit(s, "a", at=now - timedelta(seconds=900))
        on_big = [d.job_id for d in dispatch(s, now, POLICY, "regimen")]
        for job_id in on_big:
            start(s, job_id, now)
        add_worker(s, "small", [0], now)  # another host: its GPU is not one of big's
        four = submit(s, "b", gpus=4, at=now - timedelta(seconds=300))
        fresh = [submit(s, "a", at=now + timedelta(seconds=i)) for i in range(3)]
        # Not starving yet: small jobs backfill around it, on big's last GPU and on small's.
        backfilled = {d.job_id: d.worker_id for d in dispatch(s, now, POLICY, "regimen")}
    assert len(on_big) == 3 and sorted(backfilled.values()) == ["big", "small"]
    assert set(backfilled) == {fresh[0].id, fresh[1].id}
    on_big += [job_id for job_id, worker in backfilled.items() if worker == "big"]

    later = now + timedelta(seconds=400)  # the 4-GPU job has waited 700 s > 600 s
    with transaction(factory) as s:
        assert beat(s, "big", later) and beat(s, "small", later)
        for job_id in on_big[:2]:
            end(s, job_id, later)
        # Two of big's GPUs are free, but they are held: the fresh 1-GPU job stays queued.
        assert dispatch(s, later, POLICY, "regimen") == []
        job = s.get(Job, four.id)
        assert job is not None
        assert why_pending(s, job, later, POLICY)["waiting_for"][0].startswith(
            "worker big to free 4 GPUs (held for this job"
        )
        for job_id in on_big[2:]:
            end(s, job_id, later)
        decisions = [(d.job_id, d.worker_id, d.gpus) for d in dispatch(s, later, POLICY, "regimen")]
    assert decisions == [(four.id, "big", (0, 1, 2, 3))]


def test_fair_share_interleaves_and_balances_gpu_seconds(factory: SessionFactory) -> None:
    """Two teams, 20 jobs of 10 s each, team A submits all first; 2 one-GPU workers."""
    t0 = utcnow()
    with transaction(factory) as s:
        add_worker(s, "w0", [0], t0)
        add_worker(s, "w1", [1], t0)
        for i in range(20):
            submit(s, "team-a", at=t0 + timedelta(milliseconds=i))
        for i in range(20):
            submit(s, "team-b", at=t0 + timedelta(seconds=1, milliseconds=i))
        team_of = {j.id: s.get(Job, j.id).team_id for j in s.scalars(select(Job))}
        a_id = get_or_create_team(s, "team-a").id

    started: list[uuid.UUID] = []
    running: dict[uuid.UUID, datetime] = {}
    ratios: list[float] = []
    now = t0 + timedelta(seconds=2)
    for _ in range(100):
        with transaction(factory) as s:
            for job_id, finish_at in list(running.items()):
                if finish_at <= now:
                    end(s, job_id, finish_at)
                    del running[job_id]
            for worker in ("w0", "w1"):
                add_worker(s, worker, [int(worker[1])], now)
            for d in dispatch(s, now, POLICY, "regimen"):
                start(s, d.job_id, now)
                running[d.job_id] = now + timedelta(seconds=10)
                started.append(d.job_id)
            usage = {"a": 0.0, "b": 0.0}
            for job in s.scalars(select(Job).where(Job.started_at.is_not(None))):
                stop = min(job.finished_at or now, now)
                key = "a" if job.team_id == a_id else "b"
                usage[key] += (stop - job.started_at).total_seconds()
            queued = {team_of[j.id] for j in s.scalars(select(Job).where(Job.status == "queued"))}
        if len(queued) == 2 and min(usage.values()) > 0:
            ratios.append(abs(usage["a"] - usage["b"]) / max(usage.values()))
        if not running and len(started) == 40:
            break
        now += timedelta(seconds=5)

    assert len(started) == 40
    teams = ["a" if team_of[j] == a_id else "b" for j in started]
    # Both teams queued from the start: their jobs alternate, although A submitted first.
    assert teams[:20] == ["a", "b"] * 10
    assert ratios and max(ratios) <= 0.2


def test_concurrent_dispatch_never_double_books(factory: SessionFactory) -> None:
    now = utcnow()
    with transaction(factory) as s:
        add_worker(s, "w", [0, 1, 2, 3], now)
        for i in range(12):
            submit(s, f"team-{i % 3}", gpus=1, at=now + timedelta(milliseconds=i))
    barrier = threading.Barrier(4)
    results: list[int] = []

    def pass_() -> None:
        barrier.wait()
        with transaction(factory) as s:
            results.append(len(dispatch(s, utcnow(), POLICY, "regimen")))

    threads = [threading.Thread(target=pass_) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 4  # four GPUs: four placements in all, whatever the interleaving
    with factory() as s:
        allocations = s.execute(select(GpuAllocation.gpu, GpuAllocation.job_id)).all()
        assert sorted(g for g, _ in allocations) == [0, 1, 2, 3]
        assert len({j for _, j in allocations}) == 4
        assert len(s.scalars(select(Placement)).all()) == 4


def test_the_database_refuses_a_gpu_given_twice(factory: SessionFactory) -> None:
    now = utcnow()
    with transaction(factory) as s:
        add_worker(s, "w", [0], now, host="host-w")
        a, b = submit(s, "t", at=now), submit(s, "t", at=now)
        a_id, b_id = a.id, b.id
    with transaction(factory) as s:
        add_worker(s, "w-node", [0, 1], now, host="host-w")  # the same GPU 0, by another worker
        s.add(GpuAllocation(host="host-w", gpu=0, worker_id="w", job_id=a_id))
    with pytest.raises(IntegrityError), transaction(factory) as s:
        s.add(GpuAllocation(host="host-w", gpu=0, worker_id="w-node", job_id=b_id))


def test_workers_sharing_a_host_never_share_a_gpu(factory: SessionFactory) -> None:
    """One worker per GPU for small jobs and one for the whole node, on the same host."""
    now = utcnow()
    with transaction(factory) as s:
        for gpu in range(4):
            add_worker(s, f"gpu{gpu}", [gpu], now, host="node")
        add_worker(s, "whole", [0, 1, 2, 3], now, host="node")
        ones = [submit(s, "t", gpus=1, at=now + timedelta(seconds=i)) for i in range(2)]
        four = submit(s, "t", gpus=4, at=now + timedelta(seconds=3))
        two = submit(s, "t", gpus=2, at=now + timedelta(seconds=4))
        decisions = {d.job_id: d for d in dispatch(s, now, POLICY, "regimen")}
        # The 4-GPU job must wait: GPUs 0 and 1 are taken through the per-GPU workers.
        assert four.id not in decisions
        waiting = s.get(Job, four.id)
        assert waiting is not None
        assert why_pending(s, waiting, now, POLICY)["waiting_for"][0] == (
            "no worker with 4 free GPUs"
        )
    assert [(decisions[j.id].worker_id, decisions[j.id].gpus) for j in ones] == [
        ("gpu0", (0,)),
        ("gpu1", (1,)),
    ]
    assert (decisions[two.id].worker_id, decisions[two.id].gpus) == ("whole", (2, 3))
    with factory() as s:
        held = s.execute(select(GpuAllocation.host, GpuAllocation.gpu)).all()
    assert sorted(held) == [("node", 0), ("node", 1), ("node", 2), ("node", 3)]


def test_cluster_view_shows_workers_jobs_and_quotas(factory: SessionFactory) -> None:
    now = utcnow()
    with transaction(factory) as s:
        add_worker(s, "w", [0, 1], now)
        add_worker(s, "gone", [0], now - timedelta(minutes=5))
        team = get_or_create_team(s, "t")
        set_quota(s, team, max_running_jobs=3, max_gpus=2, max_queued_jobs=10, weight=2.0)
        job = submit(s, "t", gpus=2, at=now)
        submit(s, "t", gpus=1, at=now + timedelta(seconds=1))
        dispatch(s, now, POLICY, "regimen")
        view = cluster_view(s, now, POLICY)
        assert s.get(TeamQuota, team.id) is not None
    workers = {w["id"]: w for w in view["workers"]}
    assert workers["gone"]["live"] is False
    assert workers["w"]["gpus"] == [
        {"index": 0, "busy": True, "job_id": str(job.id)},
        {"index": 1, "busy": True, "job_id": str(job.id)},
    ]
    (shown,) = workers["w"]["jobs"]
    assert shown["id"] == str(job.id) and shown["team"] == "t"
    (team_row,) = view["teams"]
    assert team_row["team"] == "t"
    assert team_row["gpus_in_use"] == 2 and team_row["queued_jobs"] == 2
    assert team_row["quota"] == {
        "max_running_jobs": 3,
        "max_gpus": 2,
        "max_queued_jobs": 10,
        "weight": 2.0,
    }
