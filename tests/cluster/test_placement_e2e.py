"""Placement end to end: a real API, three real Celery workers owning simulated GPU indices.

Workers own GPUs {0} (node a), {1} (node b) and {0,1,2,3} (node c); training runs on the CPU
(torchrun with gloo for the multi-GPU jobs). Each job lands on a worker with enough free GPUs and
its trainer sees exactly those GPUs in CUDA_VISIBLE_DEVICES, one process per GPU.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.settings import Settings
from tests.faults.cluster import api_client, fault_env, tiny_spec, wait_healthz
from tests.support.processes import (
    free_port,
    process,
    uvicorn_command,
    wait_job,
    wait_log_line,
    worker_command,
)

WORKERS = {"small0": ("node-a", "0"), "small1": ("node-b", "1"), "big": ("node-c", "0,1,2,3")}


@pytest.fixture
def api_url(settings: Settings, tmp_path: Path) -> Iterator[str]:
    queue = f"{settings.task_queue}-place-{uuid.uuid4().hex[:6]}"
    env = fault_env(settings.resolved_database_url, settings.broker_url, tmp_path / "var", queue)
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    with contextlib.ExitStack() as stack:
        api = stack.enter_context(process("api", uvicorn_command(port), env, logs))
        wait_healthz(f"http://127.0.0.1:{port}", api)
        workers = []
        for name, (host, gpus) in WORKERS.items():
            own = {
                **env,
                "REGIMEN_WORKER_ID": name,
                "REGIMEN_WORKER_HOST": host,
                "REGIMEN_WORKER_GPUS": gpus,
            }
            command = worker_command(queue, name)
            workers.append(stack.enter_context(process(f"worker-{name}", command, own, logs)))
        for worker in workers:
            wait_log_line(worker, "ready.", timeout=90)
        yield f"http://127.0.0.1:{port}"


def placement(http: httpx.Client, job_id: str) -> tuple[str, str, int]:
    """(worker, CUDA_VISIBLE_DEVICES, processes) of the job's first attempt."""
    events = http.get(f"/v1/jobs/{job_id}/events/history").json()
    running = next(e for e in events if e["kind"] == "status" and e["status"] == "running")
    devices = next(e for e in events if e["kind"] == "devices")
    detail: dict[str, Any] = devices["detail"]
    return running["detail"]["worker"], detail["cuda_visible_devices"], detail["processes"]


def test_jobs_asking_1_2_and_4_gpus_land_where_they_fit(
    api_url: str, team_key: tuple[str, str]
) -> None:
    with api_client(api_url, team_key[1]) as http:
        ids = {}
        for label, gpus in [("four", 4), ("two", 2), ("one-a", 1), ("one-b", 1)]:
            spec = {**tiny_spec(20), "name": label, "resources": {"gpus": gpus}}
            response = http.post("/v1/jobs", json=spec)
            assert response.status_code == 201, response.text
            ids[label] = response.json()["id"]
        too_big = http.post("/v1/jobs", json={**tiny_spec(5), "resources": {"gpus": 8}})
        assert too_big.status_code == 422
        assert "the largest worker has 4" in too_big.json()["detail"]

        for job_id in ids.values():
            job = wait_job(http, job_id, {"succeeded", "failed", "cancelled"}, timeout=300)
            assert job["status"] == "succeeded", job

        assert placement(http, ids["four"]) == ("big", "0,1,2,3", 4)
        assert placement(http, ids["two"]) == ("big", "0,1", 2)  # after the 4-GPU job freed it
        ones = {placement(http, ids["one-a"]), placement(http, ids["one-b"])}
        assert ones == {("small0", "0", 1), ("small1", "1", 1)}  # best fit: the 1-GPU workers

        cluster = http.get("/v1/cluster").json()
        live = {w["id"]: w for w in cluster["workers"] if w["id"] in WORKERS}
        assert {name: [g["index"] for g in w["gpus"]] for name, w in live.items()} == {
            "small0": [0],
            "small1": [1],
            "big": [0, 1, 2, 3],
        }
        assert all(w["live"] and not w["jobs"] for w in live.values())  # all done: all free
