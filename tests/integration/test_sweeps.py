"""/v1/sweeps in-process on the real PostgreSQL and Redis: children validated before anything is
stored, created as queued jobs pointing at their sweep, summarised with the best by a metric.

Jobs are published on a queue of this module's own, which no worker consumes; the summary test
finishes the children by writing their outcome to the database as a worker would.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from api.main import create_app
from models import Job, Sweep, Team
from service.auth import create_key
from service.db import SessionFactory, transaction
from service.settings import Settings

SPEC: dict[str, Any] = {
    "name": "sweep-test",
    "data": {"name": "digits", "batch_size": 32},
    "model": {"name": "mlp", "hidden": [16]},
    "optimizer": {"name": "adamw", "lr": 1e-3},
    "train": {"steps": 10},
}
GRID = {"optimizer.lr": [1e-3, 1e-2], "model.hidden": [[16], [32]]}


@pytest.fixture(scope="module")
def sweep_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"task_queue": f"{settings.task_queue}-sweeps-{uuid.uuid4().hex[:6]}"}
    )


@pytest.fixture(scope="module")
def broker(redis_url: str, sweep_settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(f"{redis_url}/0")
    yield client
    client.delete(sweep_settings.task_queue)
    client.close()


@pytest.fixture(scope="module")
def client(sweep_settings: Settings, broker: redis.Redis) -> Iterator[TestClient]:
    with TestClient(create_app(sweep_settings)) as test_client:
        yield test_client


@pytest.fixture
def auth(team_key: tuple[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {team_key[1]}"}


@pytest.fixture
def team_id(team_key: tuple[str, str], session_factory: SessionFactory) -> uuid.UUID:
    with session_factory() as session:
        found = session.scalar(select(Team.id).where(Team.name == team_key[0]))
    assert found is not None
    return found


def counts(session_factory: SessionFactory, team_id: uuid.UUID) -> tuple[int, int]:
    with session_factory() as session:
        jobs = session.scalar(select(func.count()).select_from(Job).where(Job.team_id == team_id))
        sweeps = session.scalar(
            select(func.count()).select_from(Sweep).where(Sweep.team_id == team_id)
        )
    return int(jobs or 0), int(sweeps or 0)


def test_a_two_by_two_grid_creates_four_queued_children_and_publishes_them(
    client: TestClient,
    auth: dict[str, str],
    session_factory: SessionFactory,
    broker: redis.Redis,
    sweep_settings: Settings,
) -> None:
    before = broker.llen(sweep_settings.task_queue)
    response = client.post(
        "/v1/sweeps", json={"name": "grid", "spec": SPEC, "grid": GRID}, headers=auth
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["method"] == "grid"
    assert body["counts"] == {"queued": 4}
    assert body["best"] is None and body["done"] is False
    overrides = [c["overrides"] for c in body["children"]]
    assert overrides == [
        {"optimizer.lr": 1e-3, "model.hidden": [16]},
        {"optimizer.lr": 1e-3, "model.hidden": [32]},
        {"optimizer.lr": 1e-2, "model.hidden": [16]},
        {"optimizer.lr": 1e-2, "model.hidden": [32]},
    ]
    with session_factory() as session:
        jobs = {
            str(j.id): j
            for j in session.scalars(select(Job).where(Job.sweep_id == uuid.UUID(body["id"])))
        }
    assert set(jobs) == {c["job_id"] for c in body["children"]}
    for child in body["children"]:
        job = jobs[child["job_id"]]
        assert job.status == "queued"
        assert job.pool == sweep_settings.task_queue  # where a job submitted alone would go
        assert job.resolved_spec["optimizer"]["lr"] == child["overrides"]["optimizer.lr"]
        assert job.resolved_spec["model"]["hidden"] == child["overrides"]["model.hidden"]
    assert broker.llen(sweep_settings.task_queue) == before + 4


def test_one_bad_child_rejects_the_sweep_naming_child_and_path_and_stores_nothing(
    client: TestClient, auth: dict[str, str], session_factory: SessionFactory, team_id: uuid.UUID
) -> None:
    before = counts(session_factory, team_id)
    grid = {"optimizer.lr": [1e-3, 1e6], "model.hidden": [[16]]}
    response = client.post("/v1/sweeps", json={"spec": SPEC, "grid": grid}, headers=auth)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["path"] for e in errors] == ["children[1].optimizer.lr"]
    assert "optimizer.lr=1000000.0" in errors[0]["message"]
    assert counts(session_factory, team_id) == before


def test_a_malformed_path_is_a_422(client: TestClient, auth: dict[str, str]) -> None:
    response = client.post(
        "/v1/sweeps", json={"spec": SPEC, "grid": {"optimizer..lr": [1]}}, headers=auth
    )
    assert response.status_code == 422
    assert "malformed path" in response.text


def finish(
    session_factory: SessionFactory, job_id: str, status: str, metrics: dict[str, float]
) -> None:
    with transaction(session_factory) as session:
        session.execute(
            update(Job)
            .where(Job.id == uuid.UUID(job_id))
            .values(status=status, latest_metrics=metrics, attempt=1)
        )


@pytest.mark.parametrize(("goal", "best_index"), [("max", 2), ("min", 1)])
def test_the_summary_counts_states_and_names_the_best_succeeded_child(
    client: TestClient,
    auth: dict[str, str],
    session_factory: SessionFactory,
    goal: str,
    best_index: int,
) -> None:
    body = {"spec": SPEC, "grid": GRID, "metric": "val_loss", "goal": goal}
    created = client.post("/v1/sweeps", json=body, headers=auth).json()
    ids = [c["job_id"] for c in created["children"]]
    # Child 3 has the lowest loss but failed: it cannot be the best.
    finish(session_factory, ids[0], "succeeded", {"val_loss": 0.5})
    finish(session_factory, ids[1], "succeeded", {"val_loss": 0.2})
    finish(session_factory, ids[2], "succeeded", {"val_loss": 0.9})
    finish(session_factory, ids[3], "failed", {"val_loss": 0.1})

    summary = client.get(f"/v1/sweeps/{created['id']}", headers=auth).json()
    assert summary["counts"] == {"succeeded": 3, "failed": 1}
    assert summary["done"] is True
    assert [c["value"] for c in summary["children"]] == [0.5, 0.2, 0.9, 0.1]
    assert summary["best"]["job_id"] == ids[best_index]
    assert summary["best"]["overrides"] == created["children"][best_index]["overrides"]


def test_sweeps_are_listed_newest_first_and_hidden_from_other_teams(
    client: TestClient, auth: dict[str, str], session_factory: SessionFactory
) -> None:
    first = client.post(
        "/v1/sweeps", json={"name": "a", "spec": SPEC, "grid": {"seed": [1]}}, headers=auth
    ).json()
    second = client.post(
        "/v1/sweeps", json={"name": "b", "spec": SPEC, "grid": {"seed": [2]}}, headers=auth
    ).json()
    listed = client.get("/v1/sweeps", headers=auth).json()
    assert [s["id"] for s in listed][:2] == [second["id"], first["id"]]

    with transaction(session_factory) as session:
        other = {"Authorization": f"Bearer {create_key(session, f'o-{uuid.uuid4().hex[:8]}')}"}
    assert client.get(f"/v1/sweeps/{first['id']}", headers=other).status_code == 404
    assert client.get("/v1/sweeps", headers=other).json() == []
    assert client.get(f"/v1/sweeps/{uuid.uuid4()}", headers=auth).status_code == 404
    assert client.get("/v1/sweeps").status_code == 401
