"""The cluster over HTTP (in-process app, real PostgreSQL and Redis) and the admin commands.

A fresh database for this module: the cluster view and the queue span every team.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.main import create_app
from models import Job, Placement
from models.base import utcnow
from service.auth import create_key, get_or_create_team
from service.db import SessionFactory, make_engine, make_session_factory, transaction
from service.migrate import upgrade
from service.scheduler import Policy, dispatch, register_worker
from service.settings import Settings
from tests.integration.test_admin import admin
from tests.support.services import temporary_database

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC: dict[str, Any] = {
    "data": {"name": "digits"},
    "model": {"name": "mlp", "hidden": [8]},
    "optimizer": {"name": "sgd", "lr": 0.1},
    "train": {"steps": 2},
}


@pytest.fixture(scope="module")
def cluster_settings(
    postgres_base_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    with temporary_database(postgres_base_url, prefix="regimen_cluster") as url:
        settings = Settings(
            _env_file=None,
            database_url=url,
            broker_url=redis_url,
            var_dir=tmp_path_factory.mktemp("cluster-var"),
            task_queue=f"regimen-cluster-{uuid.uuid4().hex[:6]}",
        )
        engine = make_engine(settings)
        upgrade(engine)
        engine.dispose()
        yield settings
        redis.Redis.from_url(redis_url).delete(settings.task_queue)


@pytest.fixture(scope="module")
def factory(cluster_settings: Settings) -> Iterator[SessionFactory]:
    engine = make_engine(cluster_settings)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def client(cluster_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(cluster_settings)) as test_client:
        yield test_client


def new_key(factory: SessionFactory, team: str) -> dict[str, str]:
    with transaction(factory) as session:
        return {"Authorization": f"Bearer {create_key(session, team)}"}


def spec(**resources: Any) -> dict[str, Any]:
    return {**SPEC, "resources": resources}


def test_cluster_routes_need_a_key(client: TestClient) -> None:
    assert client.get("/v1/cluster").status_code == 401


def test_gpus_beyond_every_worker_are_refused_with_the_largest(
    client: TestClient, factory: SessionFactory, cluster_settings: Settings
) -> None:
    with transaction(factory) as session:
        register_worker(
            session,
            "node-1",
            host="n1",
            gpus=[0, 1],
            slots=2,
            pool=cluster_settings.task_queue,
            now=utcnow(),
        )
    headers = new_key(factory, "big-asks")
    response = client.post("/v1/jobs", json=spec(gpus=4), headers=headers)
    assert response.status_code == 422
    body = response.json()
    assert "the largest worker has 2" in body["detail"]
    assert body["errors"][0]["path"] == ["resources", "gpus"]
    assert client.get("/v1/jobs", headers=headers).json()["jobs"] == []  # nothing stored


def test_high_priority_needs_a_key_allowed_it(
    client: TestClient, factory: SessionFactory, cluster_settings: Settings
) -> None:
    headers = new_key(factory, "prio")
    response = client.post("/v1/jobs", json=spec(priority="high"), headers=headers)
    assert response.status_code == 403
    assert "set-priority" in response.json()["detail"]

    prefix = headers["Authorization"].removeprefix("Bearer ")[:10]
    done = admin(cluster_settings, "set-priority", prefix, "high")
    assert done.returncode == 0, done.stderr
    assert client.post("/v1/jobs", json=spec(priority="high"), headers=headers).status_code == 201


def test_over_max_queued_is_429_and_a_pending_job_says_why(
    client: TestClient, factory: SessionFactory, cluster_settings: Settings
) -> None:
    team = f"quota-{uuid.uuid4().hex[:6]}"
    headers = new_key(factory, team)
    done = admin(
        cluster_settings, "set-quota", "--team", team, "--max-queued-jobs", "2", "--max-gpus", "1"
    )
    assert done.returncode == 0, done.stderr
    assert "max_queued_jobs=2" in done.stdout
    ids = [client.post("/v1/jobs", json=spec(), headers=headers).json()["id"] for _ in range(2)]
    over = client.post("/v1/jobs", json=spec(), headers=headers)
    assert over.status_code == 429
    assert "limit is 2 (max_queued_jobs)" in over.json()["detail"]

    job = client.get(f"/v1/jobs/{ids[1]}", headers=headers).json()
    assert job["status"] == "queued"
    assert job["pending"]["position"] >= 1
    assert job["pending"]["waiting_for"]

    view = client.get("/v1/cluster", headers=headers).json()
    (mine,) = [t for t in view["teams"] if t["team"] == team]
    assert mine["queued_jobs"] == 2
    assert mine["quota"]["max_queued_jobs"] == 2 and mine["quota"]["max_gpus"] == 1


def test_a_team_sees_only_its_own_jobs_on_the_workers(
    client: TestClient, factory: SessionFactory, cluster_settings: Settings
) -> None:
    with transaction(factory) as session:
        now = utcnow()
        register_worker(
            session,
            "node-9",
            host="n9",
            gpus=[7],
            slots=1,
            pool=cluster_settings.task_queue,
            now=now,
        )
        get_or_create_team(session, "owner")
    owner, other = new_key(factory, "owner"), new_key(factory, "other")
    with transaction(factory) as session:  # earlier tests' queued jobs would compete for node-9
        session.execute(update(Job).where(Job.status == "queued").values(status="cancelled"))
    # The submission's own scheduling pass places it on the one worker with a free GPU.
    job_id = client.post("/v1/jobs", json=spec(gpus=1), headers=owner).json()["id"]
    with transaction(factory) as session:
        assert dispatch(session, utcnow(), Policy(), cluster_settings.task_queue) == []
        placement = session.get(Placement, uuid.UUID(job_id))
        assert placement is not None
        assert (placement.worker_id, list(placement.gpus)) == ("node-9", [7])
    broker = redis.Redis.from_url(cluster_settings.broker_url)
    own_queue = f"{cluster_settings.task_queue}.worker.node-9"
    assert broker.llen(own_queue) == 1  # sent to that worker's own queue
    broker.delete(own_queue)

    def node9(headers: dict[str, str]) -> dict[str, Any]:
        workers = client.get("/v1/cluster", headers=headers).json()["workers"]
        (worker,) = [w for w in workers if w["id"] == "node-9"]
        return dict(worker)

    mine, theirs = node9(owner), node9(other)
    assert mine["jobs"][0]["id"] == job_id
    assert mine["gpus"] == [{"index": 7, "busy": True, "job_id": job_id}]
    assert theirs["jobs"][0] == {"team": "owner", "id": None, "name": None, "gpus": [7]}
    assert theirs["gpus"] == [{"index": 7, "busy": True, "job_id": None}]
