"""Redis down at submission, and Redis restarted mid-job, on a private redis-server.

A job submitted while the broker is down is stored queued (201) and never dispatched; once Redis
is up, a worker's dispatcher sends it. A restart while a job runs loses Redis's messages (no
persistence) but not the job: its attempt is driven by the database.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.cluster import (
    FINAL,
    api_client,
    cluster,
    fault_env,
    start_redis,
    stop,
    tiny_spec,
    wait_until,
)
from tests.support.processes import wait_job
from tests.support.services import free_port

pytestmark = pytest.mark.e2e


def test_submitted_while_redis_is_down_runs_after_it_starts_and_survives_a_restart(
    scenario_env: dict[str, str], logs: Path, team_key: tuple[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env = fault_env(
        scenario_env["REGIMEN_DATABASE_URL"],
        f"redis://127.0.0.1:{port}/0",
        Path(scenario_env["REGIMEN_VAR_DIR"]),
        scenario_env["REGIMEN_TASK_QUEUE"],
    )
    with cluster(env, logs, workers=0) as live, api_client(live.api_url, team_key[1]) as http:
        created = http.post("/v1/jobs", json=tiny_spec(40))
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        assert created.json()["status"] == "queued"

        redis = start_redis(port, tmp_path / "redis")
        try:
            live.start_worker("w1")
            job = wait_job(http, job_id, FINAL, timeout=120)
            assert job["status"] == "succeeded" and job["attempt"] == 1, job

            # Redis restarted while a job runs: the job still finishes, on its first attempt.
            running = http.post("/v1/jobs", json=tiny_spec(400)).json()["id"]
            wait_until(
                lambda: http.get(f"/v1/jobs/{running}").json()["progress"]["step"] >= 50,
                120,
                "the second job training",
            )
            stop(redis)
            redis = start_redis(port, tmp_path / "redis")
            job = wait_job(http, running, FINAL, timeout=120)
            assert job["status"] == "succeeded" and job["attempt"] == 1, job
            steps = http.get(f"/v1/jobs/{running}/metrics").json()["series"]["loss"]["steps"]
            assert steps == list(range(5, 401, 5))
        finally:
            stop(redis)
