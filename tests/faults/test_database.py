"""PostgreSQL restarted mid-job (a private server): the API answers 503 with Retry-After
meanwhile, the trainer buffers its metrics, the supervisor's heartbeat rides it out, and the job
finishes on its first attempt with every metric."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from service.auth import create_key
from service.db import make_engine, make_session_factory, transaction
from service.migrate import upgrade
from service.settings import Settings
from tests.faults.cluster import FINAL, api_client, cluster, fault_env, tiny_spec
from tests.faults.postgres import start_postgres, stop_postgres
from tests.support.processes import wait_job, wait_until
from tests.support.services import start_private_postgres, temporary_database

pytestmark = pytest.mark.e2e
OUTAGE_S = 4.0


def test_postgres_restart_mid_job_loses_nothing(
    settings: Settings, logs: Path, tmp_path: Path, queue_name: str
) -> None:
    with start_private_postgres() as server, temporary_database(server.url) as url:
        engine = make_engine(Settings(_env_file=None, database_url=url))
        upgrade(engine)
        with transaction(make_session_factory(engine)) as session:
            key = create_key(session, "outage")
        engine.dispose()
        # A lease longer than the outage: the running attempt keeps it.
        env = fault_env(
            url, settings.broker_url, tmp_path / "var", queue_name, REGIMEN_LEASE_SECONDS="20"
        )
        with cluster(env, logs, workers=1) as live, api_client(live.api_url, key) as http:
            job_id = http.post("/v1/jobs", json=tiny_spec(600)).json()["id"]
            wait_until(
                lambda: http.get(f"/v1/jobs/{job_id}").json()["progress"]["step"] >= 100,
                120,
                "the job training",
            )
            stop_postgres(server)
            down_at = time.monotonic()
            answers = []
            while time.monotonic() - down_at < OUTAGE_S:
                response = http.get(f"/v1/jobs/{job_id}")
                answers.append((response.status_code, response.headers.get("Retry-After")))
                time.sleep(0.5)
            start_postgres(server)

            assert set(answers) == {(503, "5")}, answers
            job = wait_job(http, job_id, FINAL, timeout=180)
            assert job["status"] == "succeeded" and job["attempt"] == 1, job
            series = http.get(f"/v1/jobs/{job_id}/metrics").json()["series"]
            assert series["loss"]["steps"] == list(range(5, 601, 5))  # none lost
            assert series["val_loss"]["steps"] == list(range(100, 601, 100))
            events = http.get(f"/v1/jobs/{job_id}/events/history").json()
            statuses = [e["status"] for e in events if e["kind"] == "status"]
            assert statuses == ["queued", "running", "succeeded"]
            # The outage was really lived through: the trainer buffered, the heartbeat retried.
            trainer_log = tmp_path / "var" / "artifacts" / job_id / "trainer-attempt-1.log"
            assert "writes buffered" in trainer_log.read_text()
            assert "heartbeat failed" in live.workers["w1"].tail(5000)
        with pytest.raises(httpx.HTTPError):  # the cluster is gone: nothing left behind
            httpx.get(live.api_url + "/healthz", timeout=1)
