"""Leases, the reaper, fencing of checkpoints, the dispatcher, pruning, fork, 503s.

On the real PostgreSQL and the real Redis. Each test makes its own team; the reaper and the
dispatcher act on every job of the database, so the assertions are about this test's jobs only.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from api.main import create_app
from models import Checkpoint, Job, JobEvent
from models.base import utcnow
from service.auth import create_key, get_or_create_team
from service.checkpoints import (
    attempt_dir,
    find_checkpoint,
    list_checkpoints,
    register_checkpoint,
)
from service.db import SessionFactory, transaction
from service.dispatch import maintenance_tick, take_due
from service.fork import ForkError, fork_job
from service.jobs import (
    claim_job,
    finish_job,
    record_progress,
    retry_or_fail,
    submit_job,
)
from service.queue import CeleryJobQueue
from service.reaper import reap
from service.settings import Settings
from service.states import FailureReason, JobStatus
from service.storage import ArtifactStore
from service.training_sink import DatabaseSink, LeaseLost
from tests.support.services import free_port
from trainlib.sink import Metric
from trainlib.spec import SpecError

LEASE = 30.0


def tiny_spec(**resources: Any) -> dict[str, Any]:
    return {
        "name": "reliability",
        "data": {"name": "digits", "batch_size": 32},
        "model": {"name": "mlp", "hidden": [8]},
        "optimizer": {"name": "adamw", "lr": 1e-3},
        "train": {"steps": 10},
        "resources": resources,
    }


@pytest.fixture
def team_id(session_factory: SessionFactory) -> uuid.UUID:
    with transaction(session_factory) as session:
        return get_or_create_team(session, f"rel-{uuid.uuid4().hex[:10]}").id


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def submit(session_factory: SessionFactory, team_id: uuid.UUID) -> Callable[..., uuid.UUID]:
    def _submit(**resources: Any) -> uuid.UUID:
        with transaction(session_factory) as session:
            return submit_job(session, team_id=team_id, raw_spec=tiny_spec(**resources)).job.id

    return _submit


def claim(factory: SessionFactory, job_id: uuid.UUID, owner: str) -> int:
    with transaction(factory) as session:
        attempt = claim_job(session, job_id, owner, LEASE)
    assert attempt is not None
    return attempt


def expire_lease(factory: SessionFactory, job_id: uuid.UUID) -> None:
    with transaction(factory) as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def job_of(factory: SessionFactory, job_id: uuid.UUID) -> Job:
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def status_events(
    factory: SessionFactory, job_id: uuid.UUID
) -> list[tuple[int, str, dict[str, Any]]]:
    with factory() as session:
        rows = session.scalars(
            select(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.kind == "status")
            .order_by(JobEvent.id)
        )
        return [(e.attempt, str(e.status), dict(e.detail)) for e in rows]


def state_file(folder: Path, step: int, payload: bytes = b"x") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"state-{step:08d}.safetensors"
    path.write_bytes(payload * step)
    return path


# ----------------------------------------------------------------------------------- the reaper


def test_expired_lease_requeues_and_the_next_claim_is_attempt_2(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID]
) -> None:
    job_id = submit()
    assert claim(session_factory, job_id, "w1") == 1
    with transaction(session_factory) as session:
        assert job_id not in reap(session).requeued  # the lease is fresh: nothing to do
    expire_lease(session_factory, job_id)
    with transaction(session_factory) as session:
        assert job_id in reap(session).requeued
    job = job_of(session_factory, job_id)
    assert (job.status, job.lease_owner, job.dispatched_at) == ("queued", None, None)
    assert claim(session_factory, job_id, "w2") == 2

    # The zombie attempt 1 writes nothing any more.
    with transaction(session_factory) as session:
        assert not record_progress(session, job_id, 1, "w1", 5, 10, {"loss": 1.0})
        assert not finish_job(session, job_id, 1, "w1", JobStatus.SUCCEEDED)
    history = status_events(session_factory, job_id)
    assert [(a, s) for a, s, _ in history] == [
        (0, "queued"),
        (1, "running"),
        (1, "queued"),
        (2, "running"),
    ]
    assert history[2][2]["reason"] == FailureReason.WORKER_LOST
    assert "lease expired" in history[2][2]["message"]


def test_spent_attempts_fail_as_worker_lost(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID]
) -> None:
    job_id = submit(max_attempts=2)
    for attempt in (1, 2):
        assert claim(session_factory, job_id, f"w{attempt}") == attempt
        expire_lease(session_factory, job_id)
        with transaction(session_factory) as session:
            reaped = reap(session)
        assert (job_id in reaped.requeued) == (attempt == 1)
        assert (job_id in reaped.worker_lost) == (attempt == 2)
    job = job_of(session_factory, job_id)
    assert (job.status, job.failure_reason, job.attempt) == ("failed", "worker_lost", 2)
    assert job.finished_at is not None


def test_a_heartbeat_after_the_scan_wins_over_the_reaper(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID]
) -> None:
    from service.reaper import _requeue_expired

    job_id = submit()
    claim(session_factory, job_id, "w1")
    with transaction(session_factory) as session:  # the lease is renewed: no longer expired
        assert not _requeue_expired(session, job_id, 1, "w1", utcnow())
    assert job_of(session_factory, job_id).status == "running"


def test_queue_timeout_fails_a_never_started_job(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID]
) -> None:
    waiting, fresh = submit(max_queue_s=60), submit(max_queue_s=3600)
    with transaction(session_factory) as session:
        session.execute(
            update(Job)
            .where(Job.id.in_([waiting, fresh]))
            .values(created_at=utcnow() - timedelta(seconds=120))
        )
        timed_out = reap(session).queue_timeouts
    assert waiting in timed_out and fresh not in timed_out
    job = job_of(session_factory, waiting)
    assert (job.status, job.failure_reason) == ("failed", "timeout")
    assert "max_queue_s" in (job.failure_message or "")
    assert job_of(session_factory, fresh).status == "queued"


def test_infrastructure_failure_retries_then_fails(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID]
) -> None:
    job_id = submit(max_attempts=2)
    claim(session_factory, job_id, "w1")
    with transaction(session_factory) as session:
        status = retry_or_fail(session, job_id, 1, "w1", "infrastructure", "broker lost")
    assert status == JobStatus.QUEUED
    claim(session_factory, job_id, "w2")
    with transaction(session_factory) as session:
        assert retry_or_fail(session, job_id, 1, "w1", "infrastructure", "stale") is None
        status = retry_or_fail(session, job_id, 2, "w2", "infrastructure", "broker lost")
    assert status == JobStatus.FAILED
    job = job_of(session_factory, job_id)
    assert (job.status, job.failure_reason) == ("failed", "infrastructure")


# ------------------------------------------------------------------------- checkpoints, fencing


def test_stale_attempt_cannot_register_a_checkpoint(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID], store: ArtifactStore
) -> None:
    job_id = submit()
    claim(session_factory, job_id, "w1")
    zombie = DatabaseSink(session_factory, job_id, 1, "w1", store=store)
    expire_lease(session_factory, job_id)
    with transaction(session_factory) as session:
        reap(session)
    claim(session_factory, job_id, "w2")
    current = DatabaseSink(session_factory, job_id, 2, "w2", store=store)

    with pytest.raises(LeaseLost):
        zombie.on_checkpoint(40, state_file(attempt_dir(store, job_id, 1), 40))
    assert not store.path(job_id, "state-00000040.safetensors").exists()

    current.on_metrics([Metric(20, "val_loss", 0.5, 0.0)])
    current.on_checkpoint(20, state_file(attempt_dir(store, job_id, 2), 20))
    with session_factory() as session:
        rows = list_checkpoints(session, job_id)
    assert [(r.name, r.attempt, r.step) for r in rows] == [("state-00000020.safetensors", 2, 20)]
    assert rows[0].metrics["val_loss"] == 0.5
    published = store.path(job_id, rows[0].name)
    assert published.read_bytes() == b"x" * 20 and rows[0].size_bytes == 20
    # Published under the job's folder, listed as an artifact; the attempt folder stays hidden.
    assert [p.name for p in store.list(job_id)] == ["state-00000020.safetensors"]


def test_pruning_keeps_the_last_k_and_the_best(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID], store: ArtifactStore
) -> None:
    job_id = submit()
    claim(session_factory, job_id, "w1")
    folder = attempt_dir(store, job_id, 1)
    val_losses = {10: 0.9, 20: 0.2, 30: 0.5, 40: 0.6, 50: 0.7, 60: 0.8}
    for step, loss in val_losses.items():
        with transaction(session_factory) as session:
            assert register_checkpoint(
                session,
                store,
                job_id=job_id,
                attempt=1,
                owner="w1",
                step=step,
                src=state_file(folder, step),
                metrics={"val_loss": loss},
                keep=2,
            )
    with session_factory() as session:
        kept = [r.step for r in list_checkpoints(session, job_id)]
        latest = find_checkpoint(session, job_id, None)
    assert kept == [20, 50, 60]  # the best (val_loss 0.2) and the last two
    assert latest is not None and latest.step == 60
    on_disk = sorted(p.name for p in store.list(job_id))
    assert on_disk == [f"state-{s:08d}.safetensors" for s in (20, 50, 60)]


def test_sink_buffers_through_an_outage_and_writes_once_back(
    session_factory: SessionFactory,
    submit: Callable[..., uuid.UUID],
    store: ArtifactStore,
    settings: Settings,
) -> None:
    """A database that refuses connections: metrics stay buffered, then are all written."""
    from service.db import make_engine, make_session_factory

    job_id = submit()
    claim(session_factory, job_id, "w1")
    dead = make_session_factory(
        make_engine(Settings(_env_file=None, database_url=closed_postgres_url()))
    )
    sink = DatabaseSink(dead, job_id, 1, "w1", store=store, retry_seconds=0.5)
    for step in (1, 2, 3):
        sink.on_metrics([Metric(step, "loss", 1.0 / step, 0.0)])
        sink.on_progress(step, 10)  # must not raise: the writes wait in memory
    assert sink.buffered == 3 and sink.failed_writes >= 1
    sink.factory = session_factory  # the database is back
    sink.close()
    assert sink.buffered == 0
    with session_factory() as session:
        from service.metrics import read_metrics

        assert read_metrics(session, job_id)["loss"] == [(1, 1.0), (2, 0.5), (3, 1.0 / 3)]
        job = session.get(Job, job_id)
        assert job is not None and job.progress_step == 3


# ---------------------------------------------------------------------------------- dispatcher


def queue_length(redis_url: str, queue: str) -> int:
    client = redis.Redis.from_url(f"{redis_url}/0")
    try:
        return int(client.llen(queue))
    finally:
        client.close()


@pytest.fixture
def private_queue(settings: Settings, redis_url: str) -> Iterator[Settings]:
    name = f"{settings.task_queue}-dispatch-{uuid.uuid4().hex[:6]}"
    yield settings.model_copy(update={"task_queue": name, "dispatch_grace_seconds": 0.0})
    redis.Redis.from_url(f"{redis_url}/0").delete(name)


def test_dispatcher_sends_undispatched_jobs_once_and_again_when_stale(
    session_factory: SessionFactory,
    submit: Callable[..., uuid.UUID],
    private_queue: Settings,
    redis_url: str,
) -> None:
    job_id, elsewhere = submit(), submit()
    with transaction(session_factory) as session:  # this dispatcher serves its own pool only
        session.execute(update(Job).where(Job.id == job_id).values(pool=private_queue.task_queue))
    down = CeleryJobQueue(private_queue.model_copy(update={"broker_url": closed_redis_url()}))
    tick = maintenance_tick(session_factory, down, private_queue)
    assert job_id in tick.unsent  # the broker is down: the job stays queued, undispatched
    assert job_of(session_factory, job_id).dispatched_at is None

    up = CeleryJobQueue(private_queue)
    tick = maintenance_tick(session_factory, up, private_queue)
    assert job_id in tick.sent and elsewhere not in tick.sent
    assert queue_length(redis_url, private_queue.task_queue) >= 1
    assert job_id not in maintenance_tick(session_factory, up, private_queue).sent  # sent once

    with transaction(session_factory) as session:  # no worker claimed it for a long while
        session.execute(
            update(Job).where(Job.id == job_id).values(dispatched_at=utcnow() - timedelta(hours=1))
        )
        due = take_due(session, pool=private_queue.task_queue, grace_s=0, redispatch_s=600)
        assert job_id in due
    claim(session_factory, job_id, "w1")
    with transaction(session_factory) as session:  # claimed: never again
        assert not take_due(session, pool=private_queue.task_queue, grace_s=0, redispatch_s=0)


def closed_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def closed_postgres_url() -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none?connect_timeout=2"


# ----------------------------------------------------------------------------------------- fork


def test_fork_validation_and_lineage(
    session_factory: SessionFactory,
    submit: Callable[..., uuid.UUID],
    store: ArtifactStore,
) -> None:
    parent_id = submit()
    with transaction(session_factory) as session:
        parent = session.get(Job, parent_id)
        assert parent is not None
        with pytest.raises(ForkError, match="no checkpoints yet"):
            fork_job(session, parent=parent, checkpoint=None, changes={}, store=store)
    claim(session_factory, parent_id, "w1")
    for step in (10, 20):
        with transaction(session_factory) as session:
            register_checkpoint(
                session,
                store,
                job_id=parent_id,
                attempt=1,
                owner="w1",
                step=step,
                src=state_file(attempt_dir(store, parent_id, 1), step),
                metrics={},
                keep=3,
            )
    with transaction(session_factory) as session:
        parent = session.get(Job, parent_id)
        assert parent is not None
        with pytest.raises(ForkError, match="no checkpoint named 'state-x'"):
            fork_job(session, parent=parent, checkpoint="state-x", changes={}, store=store)
        with pytest.raises(SpecError, match="optimizer"):
            fork_job(
                session,
                parent=parent,
                checkpoint=None,
                changes={"optimizer.lr": -1.0},
                store=store,
            )
        with pytest.raises(SpecError, match="changes"):
            fork_job(session, parent=parent, checkpoint=None, changes={"a..b": 1}, store=store)
        child = fork_job(
            session, parent=parent, checkpoint=None, changes={"optimizer.lr": 0.01}, store=store
        )
        early = fork_job(
            session,
            parent=parent,
            checkpoint="state-00000010.safetensors",
            changes={},
            store=store,
        )
    assert (child.parent_job_id, child.forked_from) == (parent_id, "state-00000020.safetensors")
    assert child.resolved_spec["optimizer"]["lr"] == 0.01 and child.status == "queued"
    expected = copy.deepcopy(parent.spec)
    assert early.spec == expected and early.forked_from == "state-00000010.safetensors"


# ----------------------------------------------------------------------------- database outage


def test_every_route_answers_503_with_retry_after_when_the_database_is_down(
    settings: Settings, tmp_path: Path
) -> None:
    down = settings.model_copy(update={"database_url": closed_postgres_url(), "var_dir": tmp_path})
    app = create_app(down, queue=CeleryJobQueue(down))
    headers = {"Authorization": "Bearer some-key"}
    job = str(uuid.uuid4())
    checked = 0
    with TestClient(app, raise_server_exceptions=False) as client:
        for template, operations in app.openapi()["paths"].items():
            if not template.startswith("/v1/"):
                continue
            path = template.replace("{job_id}", job).replace("{name}", "x")
            path = path.replace("{sweep_id}", job)
            for method in operations:
                response = client.request(method, path, headers=headers, json={})
                # Routes that need no database (the component catalog) answer as usual.
                assert response.status_code < 500 or response.status_code == 503, (
                    method,
                    template,
                    response.text,
                )
                if response.status_code == 503:
                    assert response.headers["Retry-After"] == "5"
                    checked += 1
    assert checked >= 10


def test_submission_while_the_broker_is_down_is_stored_queued_with_201(
    settings: Settings,
    session_factory: SessionFactory,
    tmp_path: Path,
) -> None:
    down = settings.model_copy(update={"broker_url": closed_redis_url(), "var_dir": tmp_path})
    with transaction(session_factory) as session:
        key = create_key(session, f"broker-down-{uuid.uuid4().hex[:6]}")
    app = create_app(down, queue=CeleryJobQueue(down))
    with TestClient(app) as client:
        response = client.post(
            "/v1/jobs", json=tiny_spec(), headers={"Authorization": f"Bearer {key}"}
        )
    assert response.status_code == 201, response.text
    job = job_of(session_factory, uuid.UUID(response.json()["id"]))
    assert (job.status, job.dispatched_at) == ("queued", None)  # the dispatcher will send it
    with session_factory() as session:
        assert session.scalar(select(Checkpoint).where(Checkpoint.job_id == job.id)) is None


def test_a_lost_worker_of_a_cancelling_job_ends_it_cancelled(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID]
) -> None:
    """A retry would never be claimed (a claim refuses a cancel-requested job): cancel it."""
    from service.jobs import request_cancel

    stopping, retried = submit(), submit()
    for job_id in (stopping, retried):
        claim(session_factory, job_id, "w1")
    with transaction(session_factory) as session:
        job = session.get(Job, stopping)
        assert job is not None
        request_cancel(session, job)
    expire_lease(session_factory, stopping)
    with transaction(session_factory) as session:
        assert stopping in reap(session).cancelled
        status = retry_or_fail(session, retried, 1, "w1", "infrastructure", "x")
    assert status == JobStatus.QUEUED
    job = job_of(session_factory, stopping)
    assert (job.status, job.failure_reason) == ("cancelled", None)
    assert "cancel was pending" in status_events(session_factory, stopping)[-1][2]["message"]


# ------------------------------------------------------------------- where an attempt starts


def test_start_point_prefers_own_checkpoint_then_the_fork_source(
    session_factory: SessionFactory, submit: Callable[..., uuid.UUID], tmp_path: Path
) -> None:
    import torch

    from trainlib.checkpoint import save_state
    from trainlib.spec import parse_spec, resolve, spec_hash
    from workers.trainer import out_of_memory, start_point

    store = ArtifactStore(tmp_path / "artifacts")
    parent_id = submit()
    parent = job_of(session_factory, parent_id)
    digest = spec_hash(resolve(parse_spec(parent.resolved_spec)))
    claim(session_factory, parent_id, "w1")
    src = attempt_dir(store, parent_id, 1) / "state-00000010.safetensors"
    save_state(src, {"w": torch.zeros(2)}, step=10, spec_hash=digest)
    with transaction(session_factory) as session:
        register_checkpoint(
            session, store, job_id=parent_id, attempt=1, owner="w1", step=10, src=src,
            metrics={}, keep=3,
        )  # fmt: skip
        row = session.get(Job, parent_id)
        assert row is not None
        same = fork_job(session, parent=row, checkpoint=None, changes={}, store=store)
        lower = fork_job(
            session, parent=row, checkpoint=None, changes={"optimizer.lr": 1e-5}, store=store
        )
    fresh = job_of(session_factory, submit())
    published = store.path(parent_id, "state-00000010.safetensors")
    published.unlink()  # the parent pruned it: each fork kept its own link

    assert start_point(session_factory, store, fresh, digest).why is None
    retry = start_point(session_factory, store, job_of(session_factory, parent_id), digest)
    assert (retry.resume_from, retry.warm_start) == (published, None)
    continued = start_point(session_factory, store, job_of(session_factory, same.id), digest)
    own_link = store.path(same.id, "state-00000010.safetensors")
    assert (continued.resume_from, continued.warm_start) == (own_link, None)
    assert own_link.is_file()
    changed = job_of(session_factory, lower.id)
    other = spec_hash(resolve(parse_spec(changed.resolved_spec)))
    warm = start_point(session_factory, store, changed, other)
    assert (warm.resume_from, warm.warm_start) == (None, store.path(lower.id, own_link.name))

    message = out_of_memory(parse_spec(parent.resolved_spec)).message or ""
    assert "batch size 32" in message and "lower data.batch_size" in message
