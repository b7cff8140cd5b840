"""The HTTP API in-process (FastAPI's TestClient) on the real PostgreSQL and the real Redis.

The app uses the real CeleryJobQueue. This module publishes on a queue of its own (the run's
queue plus a suffix) so that a Celery worker started by another test module (tests/e2e) never
consumes, nor runs, the jobs submitted here; the queue's Redis list is deleted at the end.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.main import create_app
from models import Job, Team
from service.db import SessionFactory, transaction
from service.metrics import write_metrics
from service.settings import Settings
from trainlib.sink import Metric

REPO_ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = (REPO_ROOT / "examples" / "quickstart.yaml").read_text()
YAML = {"Content-Type": "application/yaml"}

# examples/quickstart.yaml: digits (64 features, 10 classes), hidden [256, 256], layernorm.
QUICKSTART_PARAMETERS = (
    (64 * 256 + 256)  # Linear 64 -> 256, weights + biases
    + 2 * 256  # LayerNorm(256): weight + bias
    + (256 * 256 + 256)  # Linear 256 -> 256
    + 2 * 256  # LayerNorm(256)
    + (256 * 10 + 10)  # Linear 256 -> 10
)
assert QUICKSTART_PARAMETERS == 86_026


def small_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "api-test",
        "data": {"name": "digits", "batch_size": 32},
        "model": {"name": "mlp", "hidden": [16]},
        "optimizer": {"name": "adamw", "lr": 1e-3},
        "train": {"steps": 10},
    }
    spec.update(overrides)
    return spec


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def api_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"task_queue": f"{settings.task_queue}-api-{uuid.uuid4().hex[:6]}"}
    )


@pytest.fixture(scope="module")
def broker(redis_url: str, api_settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(f"{redis_url}/0")
    yield client
    client.delete(api_settings.task_queue)
    client.close()


@pytest.fixture(scope="module")
def client(api_settings: Settings, broker: redis.Redis) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as test_client:
        yield test_client


@pytest.fixture
def key(team_key: tuple[str, str]) -> str:
    return team_key[1]


@pytest.fixture
def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def team_id(team_key: tuple[str, str], session_factory: SessionFactory) -> uuid.UUID:
    with session_factory() as session:
        found = session.scalar(select(Team.id).where(Team.name == team_key[0]))
    assert found is not None
    return found


@pytest.fixture
def other_auth(session_factory: SessionFactory) -> dict[str, str]:
    from service.auth import create_key

    with transaction(session_factory) as session:
        raw = create_key(session, f"other-{uuid.uuid4().hex[:8]}")
    return {"Authorization": f"Bearer {raw}"}


def count_jobs(session_factory: SessionFactory, team_id: uuid.UUID) -> int:
    with session_factory() as session:
        return int(
            session.scalar(select(func.count()).select_from(Job).where(Job.team_id == team_id)) or 0
        )


def submit(client: TestClient, auth: dict[str, str], **overrides: Any) -> dict[str, Any]:
    response = client.post("/v1/jobs", json=small_spec(**overrides), headers=auth)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# ---------------------------------------------------------------------------------------- auth


def v1_calls() -> list[tuple[str, str]]:
    """Every /v1 route of the app (from its OpenAPI paths), with placeholder path parameters."""
    app = create_app(Settings(_env_file=None, database_url="postgresql://nobody@127.0.0.1:1/x"))
    calls = []
    for path, operations in app.openapi()["paths"].items():
        if not path.startswith("/v1"):
            continue
        concrete = (
            path.replace("{job_id}", str(uuid.uuid4()))
            .replace("{sweep_id}", str(uuid.uuid4()))
            .replace("{dataset_id}", str(uuid.uuid4()))
            .replace("{kind}", "optimizer")
            .replace("{name}", "model.safetensors")
        )
        assert "{" not in concrete, f"unhandled path parameter in {path}"
        calls += [(method.upper(), concrete) for method in operations]
    return calls


V1_CALLS = v1_calls()


def test_the_route_list_covers_the_api() -> None:
    paths = {path for _, path in V1_CALLS}
    assert ("POST", "/v1/jobs") in V1_CALLS and ("GET", "/v1/jobs") in V1_CALLS
    assert len(V1_CALLS) >= 11, paths


@pytest.mark.parametrize(("method", "path"), V1_CALLS, ids=[f"{m} {p}" for m, p in V1_CALLS])
@pytest.mark.parametrize(
    "header",
    [None, "Bearer rgm_not-a-real-key", "Bearer ", "Basic dXNlcjpwYXNz"],
    ids=["no-key", "wrong-key", "empty-key", "basic-auth"],
)
def test_every_v1_route_needs_a_valid_key(
    client: TestClient,
    method: str,
    path: str,
    header: str | None,
    team_id: uuid.UUID,
    session_factory: SessionFactory,
) -> None:
    headers = {} if header is None else {"Authorization": header}
    before = count_jobs(session_factory, team_id)
    with session_factory() as session:
        all_before = session.scalar(select(func.count()).select_from(Job))
    headers["Content-Type"] = "application/json"
    response = client.request(method, path, headers=headers, content=json.dumps(small_spec()))
    assert response.status_code == 401, (method, path, response.text)
    assert response.headers.get("www-authenticate", "").lower().startswith("bearer")
    assert count_jobs(session_factory, team_id) == before
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == all_before


def test_a_revoked_key_is_refused(
    client: TestClient, key: str, auth: dict[str, str], session_factory: SessionFactory
) -> None:
    from sqlalchemy import update

    from models import ApiKey
    from models.base import utcnow
    from service.auth import hash_key

    assert client.get("/v1/jobs", headers=auth).status_code == 200
    with transaction(session_factory) as session:
        session.execute(
            update(ApiKey).where(ApiKey.key_hash == hash_key(key)).values(revoked_at=utcnow())
        )
    assert client.get("/v1/jobs", headers=auth).status_code == 401


# -------------------------------------------------------------------------------------- submit


def test_submit_yaml_enqueues_on_redis(
    client: TestClient,
    auth: dict[str, str],
    broker: redis.Redis,
    api_settings: Settings,
    team_id: uuid.UUID,
    session_factory: SessionFactory,
) -> None:
    queue = api_settings.task_queue
    before = broker.llen(queue)
    response = client.post("/v1/jobs", content=QUICKSTART, headers={**auth, **YAML})
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "queued"
    assert job["name"] == "quickstart-digits-mlp"
    assert job["spec"] == yaml.safe_load(QUICKSTART)
    assert job["resolved_spec"]["resources"]["max_attempts"] == 3
    assert job["progress"] == {"step": 0, "total": 600, "fraction": 0.0}
    assert broker.llen(queue) == before + 1

    # the message on the list carries the job id for the run_job task
    raw = broker.lindex(queue, 0)
    assert raw is not None
    message = json.loads(raw)
    assert message["headers"]["task"] == "regimen.run_job"
    assert job["id"] in json.dumps(message["headers"]) + str(message.get("body"))
    assert count_jobs(session_factory, team_id) == 1
    broker.delete(queue)


def test_submit_json(
    client: TestClient, auth: dict[str, str], broker: redis.Redis, api_settings: Settings
) -> None:
    before = broker.llen(api_settings.task_queue)
    response = client.post("/v1/jobs", json=small_spec(), headers=auth)
    assert response.status_code == 201, response.text
    body = response.json()
    uuid.UUID(body["id"])
    assert body["spec"] == small_spec()
    assert body["resolved_spec"]["schedule"]["name"] == "constant"
    assert body["attempt"] == 0 and body["failure"] is None
    assert broker.llen(api_settings.task_queue) == before + 1
    fetched = client.get(f"/v1/jobs/{body['id']}", headers=auth)
    assert fetched.status_code == 200
    assert fetched.json()["spec_hash"] == body["spec_hash"]


@pytest.mark.parametrize(
    ("content", "headers", "status", "needle"),
    [
        ('{"name": "x", ', {"Content-Type": "application/json"}, 400, "malformed JSON"),
        ("not json at all", {}, 400, "malformed JSON"),
        ("name: [unclosed\n  - : :", YAML, 400, "malformed YAML"),
        ("", {"Content-Type": "application/json"}, 400, "empty"),
        ("[1, 2, 3]", {"Content-Type": "application/json"}, 422, "mapping"),
    ],
    ids=["truncated-json", "no-content-type", "bad-yaml", "empty", "not-a-mapping"],
)
def test_unparseable_bodies(
    client: TestClient,
    auth: dict[str, str],
    team_id: uuid.UUID,
    session_factory: SessionFactory,
    content: str,
    headers: dict[str, str],
    status: int,
    needle: str,
) -> None:
    response = client.post("/v1/jobs", content=content, headers={**auth, **headers})
    assert response.status_code == status, response.text
    assert needle in response.json()["detail"]
    assert count_jobs(session_factory, team_id) == 0


def test_invalid_spec_names_every_field_path(
    client: TestClient, auth: dict[str, str], team_id: uuid.UUID, session_factory: SessionFactory
) -> None:
    bad = small_spec(
        optimizer={"name": "adamw", "lr": -1.0},
        model={"name": "mlp", "hidden": [16], "foo": 3},
        train={"steps": 0},
    )
    response = client.post("/v1/jobs", json=bad, headers=auth)
    assert response.status_code == 422, response.text
    body = response.json()
    paths = {e["path"]: e["message"] for e in body["errors"]}
    assert {"optimizer.lr", "model.foo", "train.steps"} <= set(paths), paths
    assert "unknown field" in paths["model.foo"]
    assert "optimizer.lr" in body["detail"]
    assert count_jobs(session_factory, team_id) == 0

    # the YAML route validates the same way
    response = client.post("/v1/jobs", content=yaml.safe_dump(bad), headers={**auth, **YAML})
    assert response.status_code == 422
    assert {e["path"] for e in response.json()["errors"]} == set(paths)
    assert count_jobs(session_factory, team_id) == 0


def test_unknown_optimizer_lists_valid_names(
    client: TestClient, auth: dict[str, str], team_id: uuid.UUID, session_factory: SessionFactory
) -> None:
    response = client.post("/v1/jobs", json=small_spec(optimizer={"name": "adamq"}), headers=auth)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["path"] for e in errors] == ["optimizer"]
    message = errors[0]["message"]
    assert "adamq" in message
    for name in ("adam", "adamw", "sgd"):
        assert name in message
    assert count_jobs(session_factory, team_id) == 0


def test_body_over_the_limit_is_413(
    api_settings: Settings,
    broker: redis.Redis,
    auth: dict[str, str],
    team_id: uuid.UUID,
    session_factory: SessionFactory,
) -> None:
    small = api_settings.model_copy(update={"max_body_bytes": 300})
    body = json.dumps(small_spec())
    padded = json.dumps(small_spec(name="x" * 150))
    assert len(body) <= 300 < len(padded)
    with TestClient(create_app(small)) as limited:
        assert limited.post("/v1/jobs", content=body, headers=auth).status_code == 201
        before = count_jobs(session_factory, team_id)
        response = limited.post("/v1/jobs", content=padded, headers=auth)
        assert response.status_code == 413, response.text
        assert "300" in response.json()["detail"]

        # without Content-Length (a chunked stream) the limit still holds
        def chunks() -> Iterator[bytes]:
            data = padded.encode()
            for i in range(0, len(data), 64):
                yield data[i : i + 64]

        response = limited.post("/v1/jobs", content=chunks(), headers=auth)
        assert response.status_code == 413, response.text
        response = limited.post("/v1/jobs/validate", content=padded, headers=auth)
        assert response.status_code == 413
        # Every other body too: a sweep of many children, a fork's changes.
        sweep = {"spec": small_spec(), "grid": {"optimizer.lr": [i / 1e4 for i in range(1, 41)]}}
        response = limited.post("/v1/sweeps", json=sweep, headers=auth)
        assert response.status_code == 413, response.text
        assert "REGIMEN_MAX_BODY_BYTES" in response.json()["detail"]
        fork = {"changes": {"name": "x" * 400}}
        response = limited.post(f"/v1/jobs/{uuid.uuid4()}/fork", json=fork, headers=auth)
        assert response.status_code == 413, response.text
        assert count_jobs(session_factory, team_id) == before


def test_idempotency_key(
    client: TestClient, auth: dict[str, str], team_id: uuid.UUID, session_factory: SessionFactory
) -> None:
    headers = {**auth, "Idempotency-Key": f"idem-{uuid.uuid4().hex}"}
    first = client.post("/v1/jobs", json=small_spec(), headers=headers)
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    again = client.post("/v1/jobs", json=small_spec(), headers=headers)
    assert again.status_code == 200, again.text
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    assert count_jobs(session_factory, team_id) == 1

    conflict = client.post("/v1/jobs", json=small_spec(seed=7), headers=headers)
    assert conflict.status_code == 409, conflict.text
    assert "Idempotency-Key" in conflict.json()["detail"]
    assert count_jobs(session_factory, team_id) == 1


# ------------------------------------------------------------------------------- list and read


def test_list_with_status_filter_and_cursor(client: TestClient, auth: dict[str, str]) -> None:
    ids = [submit(client, auth, name=f"list-{i}")["id"] for i in range(5)]
    newest_first = list(reversed(ids))
    assert client.post(f"/v1/jobs/{ids[0]}/cancel", headers=auth).status_code == 200

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = client.get("/v1/jobs", params=params, headers=auth)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["jobs"]) <= 2
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == newest_first

    queued = client.get("/v1/jobs", params={"status": "queued"}, headers=auth).json()
    assert [j["id"] for j in queued["jobs"]] == newest_first[:4]
    cancelled = client.get("/v1/jobs", params={"status": "cancelled"}, headers=auth).json()
    assert [j["id"] for j in cancelled["jobs"]] == [ids[0]]
    named = client.get("/v1/jobs", params={"name": "list-3"}, headers=auth).json()
    assert [j["id"] for j in named["jobs"]] == [ids[3]]

    assert client.get("/v1/jobs", params={"status": "paused"}, headers=auth).status_code == 422
    bad_cursor = client.get("/v1/jobs", params={"cursor": "garbage!"}, headers=auth)
    assert bad_cursor.status_code == 400
    assert client.get("/v1/jobs", params={"limit": 0}, headers=auth).status_code == 422


def test_another_teams_job_is_not_found(
    client: TestClient, auth: dict[str, str], other_auth: dict[str, str]
) -> None:
    job_id = submit(client, auth)["id"]
    assert client.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 200
    for method, path in [
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/metrics"),
        ("GET", f"/v1/jobs/{job_id}/events/history"),
        ("GET", f"/v1/jobs/{job_id}/artifacts"),
        ("POST", f"/v1/jobs/{job_id}/cancel"),
    ]:
        response = client.request(method, path, headers=other_auth)
        assert response.status_code == 404, (method, path, response.text)
    assert client.get("/v1/jobs", headers=other_auth).json()["jobs"] == []
    # the other team's cancel attempt changed nothing
    assert client.get(f"/v1/jobs/{job_id}", headers=auth).json()["status"] == "queued"
    assert client.get(f"/v1/jobs/{uuid.uuid4()}", headers=auth).status_code == 404
    assert client.get("/v1/jobs/not-a-uuid", headers=auth).status_code == 422


def test_cancel(client: TestClient, auth: dict[str, str]) -> None:
    job_id = submit(client, auth)["id"]
    response = client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None
    assert client.get(f"/v1/jobs/{job_id}", headers=auth).json()["status"] == "cancelled"
    again = client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
    assert again.status_code == 409, again.text
    assert "cancelled" in again.json()["detail"]
    events = client.get(f"/v1/jobs/{job_id}/events/history", headers=auth).json()
    assert [e["status"] for e in events] == ["queued", "cancelled"]


def test_metrics(client: TestClient, auth: dict[str, str], session_factory: SessionFactory) -> None:
    job_id = submit(client, auth)["id"]
    points = [Metric(s, "loss", 10.0 / s, 100.0 + s) for s in range(1, 201)]
    points += [Metric(s, "val_acc", s / 200, 100.0 + s) for s in range(20, 201, 20)]
    with transaction(session_factory) as session:
        write_metrics(session, uuid.UUID(job_id), points)

    url = f"/v1/jobs/{job_id}/metrics"
    everything = client.get(url, headers=auth).json()
    assert everything["job_id"] == job_id
    assert set(everything["series"]) == {"loss", "val_acc"}
    assert everything["series"]["loss"]["steps"] == list(range(1, 201))
    assert everything["series"]["loss"]["values"][0] == 10.0

    loss = client.get(url, params={"name": "loss"}, headers=auth).json()["series"]
    assert set(loss) == {"loss"}
    both = client.get(url, params=[("name", "loss"), ("name", "val_acc")], headers=auth).json()
    assert set(both["series"]) == {"loss", "val_acc"}

    tail = client.get(url, params={"name": "loss", "after_step": 197}, headers=auth).json()
    assert tail["series"]["loss"]["steps"] == [198, 199, 200]

    small = client.get(url, params={"name": "loss", "max_points": 7}, headers=auth).json()
    steps = small["series"]["loss"]["steps"]
    values = small["series"]["loss"]["values"]
    assert len(steps) == 7
    assert steps[0] == 1 and steps[-1] == 200
    assert values[0] == 10.0 and values[-1] == pytest.approx(10.0 / 200)
    assert steps == sorted(set(steps))

    assert client.get(url, params={"max_points": 0}, headers=auth).status_code == 422
    assert client.get(url, params={"after_step": -1}, headers=auth).status_code == 422
    none = client.get(url, params={"name": "nope"}, headers=auth).json()
    assert none["series"] == {}


# -------------------------------------------------------------------------- validate, catalog


def test_validate_resolves_and_estimates(
    client: TestClient, auth: dict[str, str], team_id: uuid.UUID, session_factory: SessionFactory
) -> None:
    response = client.post("/v1/jobs/validate", content=QUICKSTART, headers={**auth, **YAML})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["valid"] is True
    resolved = body["resolved_spec"]
    assert resolved["optimizer"]["name"] == "adamw"
    assert resolved["optimizer"]["lr"] == pytest.approx(2e-3)
    assert resolved["optimizer"]["betas"] == [0.9, 0.999]  # a default filled in
    assert resolved["resources"] == {
        "gpus": 0,
        "priority": "normal",
        "max_runtime_s": 86400,
        "max_attempts": 3,
        "max_queue_s": 7 * 24 * 3600,
    }
    assert resolved["init"]["name"] == "default"
    assert resolved["train"]["steps"] == 600
    assert len(body["spec_hash"]) == 64
    estimate = body["estimate"]
    assert estimate["parameters"] == QUICKSTART_PARAMETERS
    assert estimate["total_steps"] == 600
    assert estimate["train_examples"] + estimate["val_examples"] == 1797
    assert count_jobs(session_factory, team_id) == 0  # a dry run writes nothing

    # the hash is the one a submission of the same spec gets
    submitted = client.post("/v1/jobs", content=QUICKSTART, headers={**auth, **YAML}).json()
    assert submitted["spec_hash"] == body["spec_hash"]

    bad = client.post("/v1/jobs/validate", json=small_spec(optimizer={"name": "x"}), headers=auth)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["path"] == "optimizer"


def test_components(client: TestClient, auth: dict[str, str]) -> None:
    response = client.get("/v1/components", headers=auth)
    assert response.status_code == 200
    catalog = response.json()
    optimizers = {entry["name"]: entry for entry in catalog["optimizer"]}
    assert {"adam", "adamw", "sgd"} <= set(optimizers)
    adamw = optimizers["adamw"]
    assert adamw["kind"] == "optimizer"
    assert "lr" in adamw["schema"]["properties"]
    assert "weight_decay" in adamw["schema"]["properties"]
    assert adamw["summary"]
    assert "mlp" in {entry["name"] for entry in catalog["model"]}

    one_kind = client.get("/v1/components/optimizer", headers=auth)
    assert one_kind.status_code == 200
    assert {e["name"] for e in one_kind.json()} == set(optimizers)
    unknown = client.get("/v1/components/nope", headers=auth)
    assert unknown.status_code == 404
    assert "optimizer" in unknown.json()["detail"]


# ------------------------------------------------------------------------------------- health


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"database": "ok", "broker": "ok"}


def test_readyz_reports_a_broker_that_is_down(api_settings: Settings) -> None:
    down = api_settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(down)) as broken:
        response = broken.get("/readyz")
        assert response.status_code == 503, response.text
        assert response.json()["database"] == "ok"
        assert response.json()["broker"].startswith("unavailable")
        assert broken.get("/healthz").status_code == 200  # alive, just not ready


def test_submit_while_the_broker_is_down_still_stores_the_job(
    api_settings: Settings, auth: dict[str, str]
) -> None:
    """The database is the source of truth: the job stays queued for a dispatcher."""
    down = api_settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(down)) as broken:
        response = broken.post("/v1/jobs", json=small_spec(), headers=auth)
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        assert broken.get(f"/v1/jobs/{job_id}", headers=auth).json()["status"] == "queued"


def test_readyz_and_v1_report_a_database_that_is_down(api_settings: Settings) -> None:
    # A fresh Settings, not model_copy: resolved_database_url is a cached_property that a
    # model_copy(update={"database_url": ...}) would carry over unchanged.
    down = Settings(
        _env_file=None,
        database_url="postgresql+psycopg://root@127.0.0.1:1/regimen",
        broker_url=api_settings.broker_url,
        task_queue=api_settings.task_queue,
        var_dir=api_settings.var_dir,
    )
    with TestClient(create_app(down), raise_server_exceptions=False) as broken:
        ready = broken.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["database"].startswith("unavailable")
        assert ready.json()["broker"] == "ok"
        response = broken.get("/v1/jobs", headers={"Authorization": "Bearer rgm_whatever"})
        assert response.status_code == 503, response.text
        assert response.headers.get("retry-after") == "5"


def test_list_created_after_with_a_time_zone(
    client: TestClient, auth: dict[str, str], session_factory: SessionFactory
) -> None:
    ids = [submit(client, auth, name=f"after-{i}")["id"] for i in range(3)]
    with session_factory() as session:
        middle = session.get(Job, uuid.UUID(ids[1]))
        assert middle is not None
        after = middle.created_at.isoformat()
    response = client.get("/v1/jobs", params={"created_after": after}, headers=auth)
    assert response.status_code == 200, response.text
    assert [j["id"] for j in response.json()["jobs"]] == [ids[2]]


def test_list_created_after_without_a_time_zone_is_not_a_server_error(
    api_settings: Settings, auth: dict[str, str]
) -> None:
    with TestClient(create_app(api_settings), raise_server_exceptions=False) as c:
        for value in ("2020-01-01T00:00:00", "2020-01-01"):
            response = c.get("/v1/jobs", params={"created_after": value}, headers=auth)
            assert response.status_code == 200, (value, response.status_code)
