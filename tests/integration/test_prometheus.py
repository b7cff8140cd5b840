"""GET /metrics on the real PostgreSQL: parsed by prometheus_client's own parser.

Jobs are put in every state through the service layer (submit, claim, finish, cancel), so the
counts come from the same tables the API serves; each test uses a team of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import select

from api.main import create_app
from models import Job, Team
from service.db import SessionFactory, make_engine, make_session_factory, transaction
from service.jobs import claim_job, finish_job, request_cancel, submit_job
from service.metrics import write_metrics
from service.observability import JobCollector
from service.settings import Settings
from service.states import JobStatus
from trainlib.sink import Metric

SPEC = {
    "name": "prometheus-test",
    "data": {"name": "digits", "batch_size": 32},
    "model": {"name": "mlp", "hidden": [8]},
    "optimizer": {"name": "sgd", "lr": 0.1},
    "train": {"steps": 10},
}


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def scrape(client: TestClient, **headers: str) -> list[Sample]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return [s for f in text_string_to_metric_families(response.text) for s in f.samples]


def values(samples: list[Sample], name: str, **labels: str) -> list[float]:
    return [
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def make_jobs(factory: SessionFactory, team_name: str, statuses: list[JobStatus]) -> list[Job]:
    """One job per entry, driven through the service layer into that state."""
    jobs = []
    with transaction(factory) as session:
        team_id = session.scalars(select(Team.id).where(Team.name == team_name)).one()
        for i, status in enumerate(statuses):
            job = submit_job(session, team_id=team_id, raw_spec={**SPEC, "name": f"j{i}"}).job
            session.flush()
            owner = f"worker-{team_name}"
            if status in (JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED):
                attempt = claim_job(session, job.id, owner, lease_seconds=30)
                assert attempt == 1
                if status is not JobStatus.RUNNING:
                    assert finish_job(session, job.id, attempt, owner, status)
            elif status is JobStatus.CANCELLED:
                request_cancel(session, job)
            jobs.append(job)
    return jobs


def test_jobs_by_state_count_every_state(
    client: TestClient, session_factory: SessionFactory, team_key: tuple[str, str]
) -> None:
    team = team_key[0]
    wanted = {
        JobStatus.QUEUED: 3,
        JobStatus.RUNNING: 2,
        JobStatus.SUCCEEDED: 4,
        JobStatus.FAILED: 1,
        JobStatus.CANCELLED: 2,
    }
    make_jobs(session_factory, team, [s for s, n in wanted.items() for _ in range(n)])

    samples = scrape(client)
    for status, n in wanted.items():
        assert values(samples, "regimen_jobs", team=team, state=status.value) == [n], status
    assert values(samples, "regimen_database_up") == [1.0]
    # Queue depth is every team's queued jobs: the same scrape's queued gauges add up to it.
    queued_everywhere = sum(values(samples, "regimen_jobs", state="queued"))
    assert values(samples, "regimen_queue_depth") == [queued_everywhere]
    assert queued_everywhere >= wanted[JobStatus.QUEUED]


def test_a_team_with_only_queued_jobs_reports_zeros_for_the_rest(
    client: TestClient, session_factory: SessionFactory, team_key: tuple[str, str]
) -> None:
    make_jobs(session_factory, team_key[0], [JobStatus.QUEUED])
    samples = scrape(client)
    by_state = {
        s.labels["state"]: s.value
        for s in samples
        if s.name == "regimen_jobs" and s.labels["team"] == team_key[0]
    }
    assert by_state == {"queued": 1, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0}


def test_running_job_speed_and_worker_heartbeat(
    client: TestClient,
    session_factory: SessionFactory,
    settings: Settings,
    team_key: tuple[str, str],
) -> None:
    (job,) = make_jobs(session_factory, team_key[0], [JobStatus.RUNNING])
    # Two logged losses 4 s apart, 20 steps between them: 5 steps per second (other series,
    # like this accuracy at a later time, do not count).
    with transaction(session_factory) as session:
        write_metrics(
            session,
            job.id,
            [
                Metric(20, "loss", 1.0, 1_000.0),
                Metric(20, "accuracy", 0.5, 1_003.0),
                Metric(40, "loss", 0.8, 1_004.0),
            ],
        )
    with session_factory() as session:
        expires = session.get_one(Job, job.id).lease_expires_at
    assert expires is not None
    worker = f"worker-{team_key[0]}"

    samples = scrape(client)
    job_id = str(job.id)
    assert values(samples, "regimen_training_steps_per_second", job_id=job_id) == [5.0]
    # The heartbeat is the lease's last renewal: expiry minus the lease length (30 s here).
    (heartbeat,) = values(samples, "regimen_worker_last_heartbeat_timestamp_seconds", worker=worker)
    assert heartbeat == pytest.approx(expires.timestamp() - settings.lease_seconds)
    # This test claimed with a 30 s lease, the app assumes settings.lease_seconds: the age is
    # measured from the renewal the app infers, never negative.
    (age,) = values(samples, "regimen_job_lease_age_seconds", job_id=job_id, worker=worker)
    assert age >= 0


def test_request_latency_is_labelled_by_route_template(
    client: TestClient, team_key: tuple[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {team_key[1]}"}
    missing = uuid.uuid4()
    assert client.get(f"/v1/jobs/{missing}", headers=headers).status_code == 404
    assert client.get("/healthz").status_code == 200

    samples = scrape(client)
    name = "regimen_api_request_duration_seconds_count"
    assert values(samples, name, method="GET", route="/v1/jobs/{job_id}", status="404")[0] >= 1
    assert values(samples, name, method="GET", route="/healthz", status="200")[0] >= 1
    routes = {s.labels["route"] for s in samples if s.name == name}
    assert str(missing) not in " ".join(routes)  # raw paths would make one series per job
    buckets = values(samples, "regimen_api_request_duration_seconds_bucket", route="/healthz")
    assert buckets == sorted(buckets)  # cumulative buckets never decrease


def test_metrics_token_when_set(settings: Settings) -> None:
    guarded = settings.model_copy(update={"metrics_token": "scrape-secret"})
    with TestClient(create_app(guarded)) as client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        samples = scrape(client, Authorization="Bearer scrape-secret")
        assert values(samples, "regimen_database_up") == [1.0]


def test_database_down_is_reported_not_raised() -> None:
    # Port 9 (discard) on localhost: nothing listens, so the connection is refused at once.
    down = Settings(_env_file=None, database_url="postgresql://nobody@127.0.0.1:9/nothing")
    engine = make_engine(down)
    try:
        families = list(JobCollector(make_session_factory(engine), 60.0).collect())
    finally:
        engine.dispose()
    assert [(f.name, [s.value for s in f.samples]) for f in families] == [
        ("regimen_database_up", [0.0])
    ]
