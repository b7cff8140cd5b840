"""End to end as real processes: uvicorn + a Celery worker on the real PostgreSQL and Redis."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from safetensors import safe_open

from tests.e2e.conftest import LiveService
from tests.support.processes import REPO_ROOT, wait_job

pytestmark = pytest.mark.e2e
QUICKSTART = (REPO_ROOT / "examples" / "quickstart.yaml").read_bytes()
YAML = {"Content-Type": "application/yaml"}


@pytest.fixture
def client(live_service: LiveService, team_key: tuple[str, str]) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {team_key[1]}"}
    with httpx.Client(base_url=live_service.base_url, headers=headers, timeout=30) as client:
        yield client


def test_quickstart_trains_to_success(client: httpx.Client, live_service: LiveService) -> None:
    created = client.post("/v1/jobs", content=QUICKSTART, headers=YAML)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]

    job = wait_job(client, job_id, {"succeeded", "failed", "cancelled"})
    assert job["status"] == "succeeded", job
    assert job["attempt"] == 1
    assert job["progress"] == {"step": 600, "total": 600, "fraction": 1.0}

    metrics = client.get(f"/v1/jobs/{job_id}/metrics").json()["series"]
    assert metrics["val_accuracy"]["values"][-1] >= 0.95
    for name, series in metrics.items():
        steps = series["steps"]
        assert all(a < b for a, b in itertools.pairwise(steps)), name
    assert metrics["loss"]["steps"][-1] == 600

    events = client.get(f"/v1/jobs/{job_id}/events/history").json()
    statuses = [e["status"] for e in events if e["kind"] == "status"]
    assert statuses == ["queued", "running", "succeeded"]

    names = {a["name"] for a in client.get(f"/v1/jobs/{job_id}/artifacts").json()}
    assert "checkpoint.safetensors" in names
    blob = client.get(f"/v1/jobs/{job_id}/artifacts/checkpoint.safetensors")
    assert blob.status_code == 200
    path = live_service.settings.var_dir / "downloaded.safetensors"
    Path(path).write_bytes(blob.content)
    with safe_open(str(path), framework="pt") as fh:
        assert fh.metadata()["step"] == "600"
        assert any(k.endswith("weight") for k in fh.keys())  # noqa: SIM118


def test_cancel_running_job_ends_within_10_s(client: httpx.Client) -> None:
    spec = QUICKSTART.replace(b"steps: 600", b"steps: 1000000")
    job_id = client.post("/v1/jobs", content=spec, headers=YAML).json()["id"]
    deadline = time.monotonic() + 90
    while client.get(f"/v1/jobs/{job_id}").json()["progress"]["step"] == 0:
        assert time.monotonic() < deadline, "the long job never started training"
        time.sleep(0.3)

    asked = time.monotonic()
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200
    assert response.json()["cancel_requested"] is True
    job = wait_job(client, job_id, {"cancelled", "failed", "succeeded"}, timeout=10)
    assert job["status"] == "cancelled"
    assert time.monotonic() - asked < 10
    events = client.get(f"/v1/jobs/{job_id}/events/history").json()
    assert [e["kind"] for e in events].count("cancel_requested") == 1


def test_failed_job_keeps_reason_and_metrics(client: httpx.Client) -> None:
    spec = (
        b"data: {name: digits}\nmodel: {name: mlp, hidden: [512, 512]}\n"
        b"optimizer: {name: sgd, lr: 10.0, momentum: 0.99}\n"
        b"train: {steps: 3000, log_every: 5, eval_every: 1000}\n"
    )
    job_id = client.post("/v1/jobs", content=spec, headers=YAML).json()["id"]
    job = wait_job(client, job_id, {"succeeded", "failed", "cancelled"})
    assert job["status"] == "failed", job
    assert job["failure"]["reason"] == "diverged"
    assert "learning rate" in job["failure"]["message"]


def test_team_isolation(live_service: LiveService, client: httpx.Client, session_factory) -> None:
    from service.auth import create_key
    from service.db import transaction

    job_id = client.post("/v1/jobs", content=QUICKSTART, headers=YAML).json()["id"]
    with transaction(session_factory) as session:
        other_key = create_key(session, "another-team-e2e")
    other = httpx.Client(
        base_url=live_service.base_url, headers={"Authorization": f"Bearer {other_key}"}
    )
    assert other.get(f"/v1/jobs/{job_id}").status_code == 404
    assert other.post(f"/v1/jobs/{job_id}/cancel").status_code == 404
    assert other.get(f"/v1/jobs/{job_id}/metrics").status_code == 404
    assert job_id not in {j["id"] for j in other.get("/v1/jobs").json()["jobs"]}
    client.post(f"/v1/jobs/{job_id}/cancel")


def test_python_sdk_submits_and_waits(live_service: LiveService, team_key: tuple[str, str]) -> None:
    import yaml

    from client import ApiError, Client

    spec = yaml.safe_load(QUICKSTART)
    spec["train"]["steps"] = 100
    with Client(live_service.base_url, team_key[1]) as sdk:
        job = sdk.wait(sdk.submit(spec, idempotency_key="sdk-1").id, timeout=120)
        assert job.status == "succeeded"
        assert sdk.submit(spec, idempotency_key="sdk-1").id == job.id
        assert sdk.metrics(job.id, "loss").series["loss"].steps[-1] == 100
        try:
            sdk.submit({**spec, "optimizer": {"name": "no_such_optimizer"}})
        except ApiError as exc:
            assert exc.status_code == 422
            assert "valid names:" in str(exc.detail)
            assert all(name in str(exc.detail) for name in ("adam", "adamw", "sgd"))
        else:
            raise AssertionError("an unknown optimizer was accepted")


def test_three_regularizers_train_through_the_service_and_log_each(client: httpx.Client) -> None:
    import yaml

    spec = yaml.safe_load((REPO_ROOT / "examples" / "regularized-digits.yaml").read_text())
    spec["train"] = {"steps": 60, "log_every": 20, "eval_every": 30}
    created = client.post("/v1/jobs", json=spec)
    assert created.status_code == 201, created.text
    job = wait_job(client, created.json()["id"], {"succeeded", "failed", "cancelled"})
    assert job["status"] == "succeeded", job
    series = client.get(f"/v1/jobs/{job['id']}/metrics").json()["series"]
    for name in ("reg/l2", "reg/z_loss", "ema/val_accuracy", "val_accuracy", "loss"):
        assert name in series, sorted(series)
        assert series[name]["steps"][-1] == 60
    assert all(v > 0 for v in series["reg/l2"]["values"])


def test_distillation_from_another_job_of_the_team(client: httpx.Client) -> None:
    import yaml

    spec = yaml.safe_load(QUICKSTART)
    spec["train"] = {"steps": 60, "log_every": 20, "eval_every": 60}
    teacher = client.post("/v1/jobs", json=spec).json()["id"]

    student = {**spec, "model": {"name": "mlp", "hidden": [32]}}
    student["regularizers"] = [{"name": "kd", "teacher_job": teacher, "temperature": 2.0}]
    early = client.post("/v1/jobs", json=student)
    assert early.status_code == 422  # the teacher has not finished: nothing is stored
    assert "regularizers[0].teacher_job" in early.text

    assert wait_job(client, teacher, {"succeeded", "failed"})["status"] == "succeeded"
    created = client.post("/v1/jobs", json=student)
    assert created.status_code == 201, created.text
    job = wait_job(client, created.json()["id"], {"succeeded", "failed", "cancelled"})
    assert job["status"] == "succeeded", job
    assert job["latest_metrics"]["reg/kd"] > 0
