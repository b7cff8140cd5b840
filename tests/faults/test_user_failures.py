"""User errors are not retried: diverged (at its step, metrics kept), timeout; cancel in 5 s."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import pytest

from tests.faults.cluster import FINAL, api_client, cluster, tiny_spec
from tests.support.processes import wait_job, wait_until

pytestmark = pytest.mark.e2e


def test_diverged_timeout_and_cancel(
    scenario_env: dict[str, str], logs: Path, team_key: tuple[str, str]
) -> None:
    with (
        cluster(scenario_env, logs, workers=1) as live,
        api_client(live.api_url, team_key[1]) as http,
    ):
        # NaN: SGD at lr 10 with momentum 0.99 leaves the finite floats within 30-odd steps.
        diverging = tiny_spec(300, log_every=1, eval_every=1000)
        diverging["optimizer"] = {"name": "sgd", "lr": 10.0, "momentum": 0.99}
        diverging["model"]["hidden"] = [64]
        diverging.pop("schedule")
        job_id = http.post("/v1/jobs", json=diverging).json()["id"]
        job = wait_job(http, job_id, FINAL, timeout=120)
        assert job["status"] == "failed" and job["attempt"] == 1, job
        assert job["failure"]["reason"] == "diverged"
        found = re.search(r"became (nan|inf) by step (\d+)", job["failure"]["message"])
        assert found, job["failure"]["message"]
        step = int(found.group(2))
        loss = http.get(f"/v1/jobs/{job_id}/metrics", params={"name": "loss"}).json()
        kept = loss["series"]["loss"]
        assert kept["steps"] == list(range(1, step))  # every finite step kept, none after
        assert all(math.isfinite(v) for v in kept["values"])

        # Past resources.max_runtime_s: timeout, not retried.
        slow = tiny_spec(1_000_000)
        slow["resources"] = {"max_runtime_s": 3}
        job_id = http.post("/v1/jobs", json=slow).json()["id"]
        job = wait_job(http, job_id, FINAL, timeout=120)
        assert job["status"] == "failed" and job["attempt"] == 1, job
        assert job["failure"]["reason"] == "timeout"
        assert "max_runtime_s" in job["failure"]["message"]

        # Cancel a running job: it ends within 5 s, with a checkpoint of where it stopped.
        job_id = http.post("/v1/jobs", json=tiny_spec(1_000_000)).json()["id"]
        wait_until(
            lambda: http.get(f"/v1/jobs/{job_id}").json()["progress"]["step"] > 0,
            120,
            "the long job training",
        )
        asked = time.monotonic()
        assert http.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        job = wait_job(http, job_id, FINAL, timeout=5)
        took = time.monotonic() - asked
        assert job["status"] == "cancelled"
        history = http.get(f"/v1/jobs/{job_id}/events/history").json()
        assert [e["status"] for e in history if e["kind"] == "status"] == [
            "queued",
            "running",
            "cancelled",
        ]
        assert http.get(f"/v1/jobs/{job_id}/checkpoints").json(), "a checkpoint at the stop"
    print(f"\ncancel: ended {took:.1f} s after the request")
