"""The job lifecycle in service/ on the real PostgreSQL: submit, claim, lease, cancel, finish.

Each test makes its own team (a unique name), so tests never see each other's jobs.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from models import Job, JobEvent, MetricPoint
from service.auth import get_or_create_team
from service.db import SessionFactory, transaction
from service.jobs import (
    IdempotencyConflict,
    JobNotFound,
    claim_job,
    finish_job,
    get_job,
    list_events,
    list_jobs,
    record_progress,
    renew_lease,
    request_cancel,
    submit_job,
)
from service.metrics import read_metrics, write_metrics
from service.states import IllegalTransition, JobStatus
from service.storage import ArtifactStore
from service.training_sink import DatabaseSink, LeaseLost
from trainlib.sink import Metric
from trainlib.spec import SpecError, parse_spec, resolve, spec_hash

LEASE = 30.0


def minimal_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "svc-test",
        "data": {"name": "digits", "batch_size": 32},
        "model": {"name": "mlp", "hidden": [16]},
        "optimizer": {"name": "adamw", "lr": 1e-3},
        "train": {"steps": 10},
    }
    spec.update(overrides)
    return spec


@pytest.fixture
def team_id(session_factory: SessionFactory) -> uuid.UUID:
    with transaction(session_factory) as session:
        return get_or_create_team(session, f"svc-{uuid.uuid4().hex[:10]}").id


@pytest.fixture
def submit(session_factory: SessionFactory, team_id: uuid.UUID) -> Callable[..., uuid.UUID]:
    def _submit(raw: dict[str, Any] | None = None, key: str | None = None) -> uuid.UUID:
        with transaction(session_factory) as session:
            result = submit_job(
                session,
                team_id=team_id,
                raw_spec=raw if raw is not None else minimal_spec(),
                idempotency_key=key,
            )
            assert result.created
            return result.job.id

    return _submit


def count_jobs(session: Session, team_id: uuid.UUID | None = None) -> int:
    query = select(func.count()).select_from(Job)
    if team_id is not None:
        query = query.where(Job.team_id == team_id)
    return int(session.scalar(query) or 0)


def load(session_factory: SessionFactory, job_id: uuid.UUID) -> Job:
    with session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def requeue(session_factory: SessionFactory, job_id: uuid.UUID) -> None:
    """What the reaper does to a job whose worker died (no reaper in service/ yet)."""
    with transaction(session_factory) as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status=JobStatus.QUEUED, lease_owner=None, lease_expires_at=None)
        )


# ----------------------------------------------------------------------------------- submit


def test_submit_stores_spec_resolved_hash_and_a_queued_event(
    session_factory: SessionFactory, team_id: uuid.UUID
) -> None:
    raw = minimal_spec()
    submitted_copy = copy.deepcopy(raw)
    with transaction(session_factory) as session:
        result = submit_job(session, team_id=team_id, raw_spec=raw)
        assert result.created
        job_id = result.job.id

    job = load(session_factory, job_id)
    assert job.team_id == team_id
    assert job.status == JobStatus.QUEUED
    assert job.attempt == 0
    assert job.name == "svc-test"
    assert job.spec == submitted_copy  # as submitted: no defaults added
    assert "schedule" not in job.spec
    expected_resolved = resolve(parse_spec(submitted_copy))
    assert job.resolved_spec == expected_resolved
    assert job.resolved_spec["schedule"]["name"] == "constant"  # a default filled in
    assert job.resolved_spec["optimizer"]["weight_decay"] == pytest.approx(1e-2)
    assert job.spec_hash == spec_hash(expected_resolved)
    assert len(job.spec_hash) == 64
    assert job.max_attempts == job.resolved_spec["resources"]["max_attempts"]
    assert job.created_at.tzinfo is not None

    with session_factory() as session:
        events = list_events(session, job_id)
    assert [(e.kind, e.status, e.attempt) for e in events] == [("status", "queued", 0)]


@pytest.mark.parametrize(
    "bad",
    [
        minimal_spec(optimizer={"name": "adamw", "lr": -1.0}),
        minimal_spec(optimizer={"name": "nope"}),
        minimal_spec(model={"name": "mlp", "hidden": [16], "foo": 1}),
        {"name": "x"},
        ["not", "a", "mapping"],
    ],
    ids=["negative-lr", "unknown-optimizer", "extra-field", "missing-fields", "not-a-dict"],
)
def test_a_bad_spec_raises_spec_error_and_writes_nothing(
    session_factory: SessionFactory, team_id: uuid.UUID, bad: Any
) -> None:
    with session_factory() as session:
        before_all, before_team = count_jobs(session), count_jobs(session, team_id)
        events_before = session.scalar(select(func.count()).select_from(JobEvent))
    with pytest.raises(SpecError) as info, transaction(session_factory) as session:
        submit_job(session, team_id=team_id, raw_spec=bad, idempotency_key="k-bad")
    assert info.value.errors, "SpecError without errors"
    with session_factory() as session:
        assert count_jobs(session, team_id) == before_team == 0
        assert count_jobs(session) == before_all
        assert session.scalar(select(func.count()).select_from(JobEvent)) == events_before


def test_idempotency_key_replays_the_same_job(
    session_factory: SessionFactory, team_id: uuid.UUID
) -> None:
    with transaction(session_factory) as session:
        first = submit_job(session, team_id=team_id, raw_spec=minimal_spec(), idempotency_key="k1")
    with transaction(session_factory) as session:
        again = submit_job(session, team_id=team_id, raw_spec=minimal_spec(), idempotency_key="k1")
    assert first.created and not again.created
    assert again.job.id == first.job.id
    # the same spec with its defaults written out resolves to the same hash: still a replay
    explicit = minimal_spec(schedule={"name": "constant"})
    with transaction(session_factory) as session:
        third = submit_job(session, team_id=team_id, raw_spec=explicit, idempotency_key="k1")
    assert not third.created and third.job.id == first.job.id
    with session_factory() as session:
        assert count_jobs(session, team_id) == 1
        assert len(list_events(session, first.job.id)) == 1


def test_idempotency_key_with_a_different_spec_conflicts(
    session_factory: SessionFactory, team_id: uuid.UUID
) -> None:
    with transaction(session_factory) as session:
        submit_job(session, team_id=team_id, raw_spec=minimal_spec(), idempotency_key="k2")
    different = minimal_spec(optimizer={"name": "adamw", "lr": 5e-3})
    with pytest.raises(IdempotencyConflict), transaction(session_factory) as session:
        submit_job(session, team_id=team_id, raw_spec=different, idempotency_key="k2")
    with session_factory() as session:
        assert count_jobs(session, team_id) == 1


def test_idempotency_keys_are_per_team(session_factory: SessionFactory, team_id: uuid.UUID) -> None:
    with transaction(session_factory) as session:
        other = get_or_create_team(session, f"svc-other-{uuid.uuid4().hex[:8]}").id
    with transaction(session_factory) as session:
        mine = submit_job(session, team_id=team_id, raw_spec=minimal_spec(), idempotency_key="k")
    with transaction(session_factory) as session:
        theirs = submit_job(session, team_id=other, raw_spec=minimal_spec(), idempotency_key="k")
    assert mine.created and theirs.created
    assert mine.job.id != theirs.job.id


# ------------------------------------------------------------------------ claim, lease, fence


def test_claim_once(session_factory: SessionFactory, submit: Callable[..., uuid.UUID]) -> None:
    job_id = submit()
    with transaction(session_factory) as session:
        assert claim_job(session, job_id, "w1", LEASE) == 1
    with transaction(session_factory) as session:
        assert claim_job(session, job_id, "w2", LEASE) is None  # a redelivered message
    with transaction(session_factory) as session:
        assert claim_job(session, uuid.uuid4(), "w2", LEASE) is None  # unknown job
    job = load(session_factory, job_id)
    assert job.status == JobStatus.RUNNING
    assert job.attempt == 1
    assert job.lease_owner == "w1"
    assert job.lease_expires_at is not None and job.started_at is not None
    with session_factory() as session:
        statuses = [(e.status, e.attempt) for e in list_events(session, job_id)]
    assert statuses == [("queued", 0), ("running", 1)]


def test_renew_lease_is_fenced_and_reports_cancel(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID]
) -> None:
    job_id = submit()
    with transaction(session_factory) as session:
        attempt = claim_job(session, job_id, "w1", LEASE)
    assert attempt == 1
    expires = load(session_factory, job_id).lease_expires_at
    assert expires is not None

    with transaction(session_factory) as session:
        assert renew_lease(session, job_id, attempt, "intruder", LEASE) is None
        assert renew_lease(session, job_id, attempt + 1, "w1", LEASE) is None
        assert renew_lease(session, uuid.uuid4(), attempt, "w1", LEASE) is None
    assert load(session_factory, job_id).lease_expires_at == expires  # nothing extended

    time.sleep(0.01)
    with transaction(session_factory) as session:
        assert renew_lease(session, job_id, attempt, "w1", LEASE * 2) is False
    renewed = load(session_factory, job_id).lease_expires_at
    assert renewed is not None and renewed > expires

    with transaction(session_factory) as session:
        job = request_cancel(session, get_job(session, job_id))
        assert job.status == JobStatus.RUNNING and job.cancel_requested
    with transaction(session_factory) as session:
        assert renew_lease(session, job_id, attempt, "w1", LEASE) is True
    with session_factory() as session:
        kinds = [e.kind for e in list_events(session, job_id)]
    assert kinds.count("cancel_requested") == 1

    # asking again is harmless and writes no second event
    with transaction(session_factory) as session:
        request_cancel(session, get_job(session, job_id))
    with session_factory() as session:
        assert [e.kind for e in list_events(session, job_id)].count("cancel_requested") == 1


def test_a_stale_attempt_cannot_write(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID]
) -> None:
    job_id = submit()
    with transaction(session_factory) as session:
        assert claim_job(session, job_id, "w1", LEASE) == 1
    requeue(session_factory, job_id)  # w1 was presumed dead
    with transaction(session_factory) as session:
        assert claim_job(session, job_id, "w2", LEASE) == 2
    with transaction(session_factory) as session:
        assert record_progress(session, job_id, 2, "w2", 3, 10, {"loss": 1.5}) is True

    before = load(session_factory, job_id)
    with transaction(session_factory) as session:
        assert record_progress(session, job_id, 1, "w1", 9, 10, {"loss": 0.1}) is False
        assert record_progress(session, job_id, 2, "w1", 9, 10, {"loss": 0.1}) is False
        assert renew_lease(session, job_id, 1, "w1", LEASE) is None
    with transaction(session_factory) as session:
        assert finish_job(session, job_id, 1, "w1", JobStatus.SUCCEEDED) is False
    with transaction(session_factory) as session:
        assert finish_job(session, job_id, 1, "w2", JobStatus.FAILED, reason="x") is False
    after = load(session_factory, job_id)
    assert after.status == JobStatus.RUNNING
    assert after.attempt == 2 and after.lease_owner == "w2"
    assert after.progress_step == before.progress_step == 3
    assert after.latest_metrics == before.latest_metrics == {"loss": 1.5}
    assert after.finished_at is None and after.failure_reason is None
    with session_factory() as session:
        finals = [e for e in list_events(session, job_id) if e.status in ("succeeded", "failed")]
    assert finals == []


def test_record_progress_and_finish(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID]
) -> None:
    job_id = submit()
    with transaction(session_factory) as session:
        attempt = claim_job(session, job_id, "w1", LEASE)
    assert attempt == 1
    with transaction(session_factory) as session:
        assert record_progress(session, job_id, attempt, "w1", 5, 10, {"loss": 2.0, "acc": 0.1})
    with transaction(session_factory) as session:
        assert record_progress(session, job_id, attempt, "w1", 10, 10, {"loss": 1.0})
    job = load(session_factory, job_id)
    assert (job.progress_step, job.total_steps) == (10, 10)
    assert job.latest_metrics == {"loss": 1.0, "acc": 0.1}  # merged, newest wins

    with transaction(session_factory) as session:
        assert finish_job(
            session, job_id, attempt, "w1", JobStatus.FAILED, reason="diverged", message="nan"
        )
    job = load(session_factory, job_id)
    assert job.status == JobStatus.FAILED
    assert job.failure_reason == "diverged" and job.failure_message == "nan"
    assert job.finished_at is not None
    assert job.lease_owner is None and job.lease_expires_at is None
    with session_factory() as session:
        last = list_events(session, job_id)[-1]
    assert (last.kind, last.status, last.attempt) == ("status", "failed", 1)
    assert last.detail == {"reason": "diverged", "message": "nan"}

    # a finished attempt can neither finish again nor report progress
    with transaction(session_factory) as session:
        assert finish_job(session, job_id, attempt, "w1", JobStatus.SUCCEEDED) is False
        assert record_progress(session, job_id, attempt, "w1", 11, 10, {}) is False
    assert load(session_factory, job_id).status == JobStatus.FAILED


def test_finish_succeeded_writes_the_status_event(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID]
) -> None:
    job_id = submit()
    with transaction(session_factory) as session:
        attempt = claim_job(session, job_id, "w1", LEASE)
    assert attempt is not None
    with transaction(session_factory) as session:
        assert finish_job(session, job_id, attempt, "w1", JobStatus.SUCCEEDED)
    with session_factory() as session:
        events = list_events(session, job_id)
        assert [e.status for e in events] == ["queued", "running", "succeeded"]
        assert events[-1].detail == {}
        # list_events resumes after an id (SSE Last-Event-ID)
        assert [e.id for e in list_events(session, job_id, events[0].id)] == [
            e.id for e in events[1:]
        ]
    assert load(session_factory, job_id).status == JobStatus.SUCCEEDED


def test_finish_rejects_a_status_not_reachable_from_running(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID]
) -> None:
    job_id = submit()
    with transaction(session_factory) as session:
        attempt = claim_job(session, job_id, "w1", LEASE)
    assert attempt is not None
    with pytest.raises(IllegalTransition), transaction(session_factory) as session:
        finish_job(session, job_id, attempt, "w1", JobStatus.RUNNING)
    assert load(session_factory, job_id).status == JobStatus.RUNNING


# -------------------------------------------------------------------------------------- cancel


def test_cancel_a_queued_job_at_once_and_a_finished_one_raises(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID]
) -> None:
    job_id = submit()
    with transaction(session_factory) as session:
        job = request_cancel(session, get_job(session, job_id))
        assert job.status == JobStatus.CANCELLED
    job = load(session_factory, job_id)
    assert job.status == JobStatus.CANCELLED and job.finished_at is not None
    with session_factory() as session:
        assert [e.status for e in list_events(session, job_id)] == ["queued", "cancelled"]
    # a cancelled job cannot be claimed
    with transaction(session_factory) as session:
        assert claim_job(session, job_id, "w1", LEASE) is None

    with pytest.raises(IllegalTransition), transaction(session_factory) as session:
        request_cancel(session, get_job(session, job_id))

    finished = submit()
    with transaction(session_factory) as session:
        attempt = claim_job(session, finished, "w1", LEASE)
    assert attempt is not None
    with transaction(session_factory) as session:
        finish_job(session, finished, attempt, "w1", JobStatus.SUCCEEDED)
    with pytest.raises(IllegalTransition), transaction(session_factory) as session:
        request_cancel(session, get_job(session, finished))
    job = load(session_factory, finished)
    assert job.status == JobStatus.SUCCEEDED and not job.cancel_requested


# ------------------------------------------------------------------------------ list and teams


def test_list_jobs_pages_newest_first_and_filters(
    session_factory: SessionFactory, team_id: uuid.UUID, submit: Callable[..., uuid.UUID]
) -> None:
    created = [submit(minimal_spec(name=f"job-{i}")) for i in range(5)]
    newest_first = list(reversed(created))

    seen: list[uuid.UUID] = []
    cursor: str | None = None
    pages = 0
    with session_factory() as session:
        while True:
            page = list_jobs(session, team_id, limit=2, cursor=cursor)
            pages += 1
            assert len(page.jobs) <= 2
            seen += [j.id for j in page.jobs]
            cursor = page.next_cursor
            if cursor is None:
                break
            assert pages < 10, "pagination does not end"
    assert seen == newest_first
    assert pages == 3

    with transaction(session_factory) as session:
        for job_id in created[1:3]:
            request_cancel(session, get_job(session, job_id))
    with session_factory() as session:
        cancelled = list_jobs(session, team_id, status="cancelled")
        queued = list_jobs(session, team_id, status="queued")
        by_name = list_jobs(session, team_id, name="job-4")
        running = list_jobs(session, team_id, status="running")
    assert [j.id for j in cancelled.jobs] == [created[2], created[1]]
    assert [j.id for j in queued.jobs] == [created[4], created[3], created[0]]
    assert [j.id for j in by_name.jobs] == [created[4]]
    assert running.jobs == [] and running.next_cursor is None

    with session_factory() as session:
        after = load(session_factory, created[1]).created_at
        recent = list_jobs(session, team_id, created_after=after)
    assert [j.id for j in recent.jobs] == [created[4], created[3], created[2]]

    with session_factory() as session, pytest.raises(ValueError):
        list_jobs(session, team_id, cursor="not-a-cursor")


def test_another_team_cannot_see_the_job(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID], team_id: uuid.UUID
) -> None:
    job_id = submit()
    with transaction(session_factory) as session:
        other = get_or_create_team(session, f"svc-other-{uuid.uuid4().hex[:8]}").id
    with session_factory() as session:
        assert get_job(session, job_id, team_id).id == job_id
        assert get_job(session, job_id).id == job_id  # no team: the worker's view
        with pytest.raises(JobNotFound):
            get_job(session, job_id, other)
        with pytest.raises(JobNotFound):
            get_job(session, uuid.uuid4(), team_id)
        assert list_jobs(session, other).jobs == []


# ------------------------------------------------------------------------------------- metrics


def metric_rows(session: Session, job_id: uuid.UUID) -> list[tuple[str, int, int]]:
    return [
        (name, step, count)
        for name, step, count in session.execute(
            text(
                "SELECT name, step, count(*) FROM metrics WHERE job_id = :j "
                "GROUP BY name, step ORDER BY name, step"
            ),
            {"j": job_id},
        )
    ]


def test_write_metrics_is_idempotent_and_reads_downsample(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID]
) -> None:
    job_id = submit()
    batch = [Metric(step, "loss", 1.0 / step, 1000.0 + step) for step in range(1, 101)]
    batch += [Metric(step, "val_acc", step / 100, 1000.0 + step) for step in range(10, 101, 10)]
    with transaction(session_factory) as session:
        write_metrics(session, job_id, batch)
    with transaction(session_factory) as session:
        write_metrics(session, job_id, batch)  # a retried batch
    with transaction(session_factory) as session:
        write_metrics(session, job_id, [])  # nothing to do, no error
    with session_factory() as session:
        rows = metric_rows(session, job_id)
        total = session.scalar(
            select(func.count()).select_from(MetricPoint).where(MetricPoint.job_id == job_id)
        )
    assert total == 110
    assert len(rows) == 110 and all(count == 1 for _, _, count in rows)

    # a rewrite of the same step updates the value
    with transaction(session_factory) as session:
        write_metrics(session, job_id, [Metric(100, "loss", 42.0, 2000.0)])
    with session_factory() as session:
        everything = read_metrics(session, job_id)
        loss_only = read_metrics(session, job_id, names=["loss"])
        tail = read_metrics(session, job_id, names=["loss"], after_step=95)
        small = read_metrics(session, job_id, max_points=5)
        total = session.scalar(
            select(func.count()).select_from(MetricPoint).where(MetricPoint.job_id == job_id)
        )
    assert total == 110
    assert set(everything) == {"loss", "val_acc"}
    assert len(everything["loss"]) == 100 and everything["loss"][-1] == (100, 42.0)
    assert everything["loss"][0] == (1, 1.0)
    assert set(loss_only) == {"loss"}
    assert [s for s, _ in tail["loss"]] == [96, 97, 98, 99, 100]
    assert small["loss"][0] == (1, 1.0) and small["loss"][-1] == (100, 42.0)
    assert len(small["loss"]) == 5
    assert small["val_acc"][0][0] == 10 and small["val_acc"][-1][0] == 100
    assert len(small["val_acc"]) == 5
    steps = [s for s, _ in small["loss"]]
    assert steps == sorted(set(steps))


# --------------------------------------------------------------------------------------- sink


def test_database_sink_writes_metrics_and_progress_then_detects_a_lost_lease(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID]
) -> None:
    job_id = submit()
    with transaction(session_factory) as session:
        attempt = claim_job(session, job_id, "w1", LEASE)
    assert attempt == 1
    sink = DatabaseSink(session_factory, job_id, attempt, "w1")
    sink.on_metrics([Metric(1, "loss", 2.0, 1.0), Metric(2, "loss", 1.5, 2.0)])
    sink.on_metrics([Metric(2, "lr", 1e-3, 2.0)])
    sink.on_progress(2, 10)
    job = load(session_factory, job_id)
    assert (job.progress_step, job.total_steps) == (2, 10)
    assert job.latest_metrics == {"loss": 1.5, "lr": 1e-3}
    with session_factory() as session:
        assert read_metrics(session, job_id) == {"loss": [(1, 2.0), (2, 1.5)], "lr": [(2, 1e-3)]}
    assert not sink.should_stop()

    # The job is taken over by another attempt: this sink must stop and write nothing more.
    requeue(session_factory, job_id)
    with transaction(session_factory) as session:
        assert claim_job(session, job_id, "w2", LEASE) == 2
    sink.on_metrics([Metric(3, "loss", 1.0, 3.0)])
    with pytest.raises(LeaseLost):
        sink.on_progress(3, 10)
    job = load(session_factory, job_id)
    assert job.progress_step == 2 and job.latest_metrics == {"loss": 1.5, "lr": 1e-3}
    with session_factory() as session:
        assert 3 not in [s for s, _ in read_metrics(session, job_id)["loss"]]


def test_database_sink_records_checkpoints_as_events(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID], tmp_path: Any
) -> None:
    job_id = submit()
    with transaction(session_factory) as session:
        attempt = claim_job(session, job_id, "w1", LEASE)
    assert attempt is not None
    store = ArtifactStore(tmp_path / "artifacts")
    sink = DatabaseSink(session_factory, job_id, attempt, "w1", store=store)
    state = tmp_path / "state-00000005.safetensors"
    state.write_bytes(b"state")
    sink.on_checkpoint(5, state)
    with session_factory() as session:
        event = list_events(session, job_id)[-1]
    assert event.kind == "checkpoint" and event.attempt == attempt
    assert event.detail == {"step": 5, "name": "state-00000005.safetensors"}


# -------------------------------------------------------------------------------- concurrency


def test_concurrent_claims_have_one_winner(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID]
) -> None:
    job_id = submit()
    barrier = threading.Barrier(6)

    def claim(worker: int) -> int | None:
        barrier.wait()
        with transaction(session_factory) as session:
            return claim_job(session, job_id, f"w{worker}", LEASE)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(claim, range(6)))
    assert sorted(results, key=lambda r: r is not None) == [None] * 5 + [1]
    job = load(session_factory, job_id)
    assert job.attempt == 1 and job.lease_owner == f"w{results.index(1)}"
    with session_factory() as session:
        assert [e.status for e in list_events(session, job_id)] == ["queued", "running"]


def test_concurrent_submits_with_one_idempotency_key_make_one_job(
    session_factory: SessionFactory, team_id: uuid.UUID
) -> None:
    barrier = threading.Barrier(6)

    def submit_once(_: int) -> tuple[uuid.UUID, bool]:
        barrier.wait()
        with transaction(session_factory) as session:
            result = submit_job(
                session, team_id=team_id, raw_spec=minimal_spec(), idempotency_key="race"
            )
            return result.job.id, result.created

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(submit_once, range(6)))
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    with session_factory() as session:
        assert count_jobs(session, team_id) == 1
