"""The embedded default end to end: `python -m service.embedded` (SQLite + filesystem broker)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.processes import REPO_ROOT, free_port, process, wait_http_ok, wait_job

pytestmark = pytest.mark.e2e


def embedded_env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGIMEN_")}
    env.update(REGIMEN_VAR_DIR=str(var_dir), PYTHONPATH=str(REPO_ROOT))
    return env


def test_embedded_default_trains_quickstart_and_restarts(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    env = embedded_env(var_dir)
    port = free_port()
    command = [sys.executable, "-m", "service.embedded", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"

    with process("embedded", command, env, tmp_path) as service:
        wait_http_ok(f"{base}/readyz", service, timeout=90)
        key = (var_dir / "dev-api-key").read_text().strip()
        assert (var_dir / "dev-api-key").stat().st_mode & 0o077 == 0, "the key file is private"
        assert (var_dir / "regimen.db").is_file()
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
            spec = (REPO_ROOT / "examples" / "quickstart.yaml").read_bytes()
            created = client.post(
                "/v1/jobs", content=spec, headers={"Content-Type": "application/yaml"}
            )
            assert created.status_code == 201, created.text
            job_id = created.json()["id"]
            job = wait_job(client, job_id, {"succeeded", "failed", "cancelled"}, timeout=180)
            assert job["status"] == "succeeded", (job, service.tail())
            accuracy = client.get(
                f"/v1/jobs/{job_id}/metrics", params={"name": "val_accuracy"}
            ).json()
            assert accuracy["series"]["val_accuracy"]["values"][-1] >= 0.95
        assert list((var_dir / "broker").iterdir()), "the filesystem broker lives under var/"

    # A second start reuses var/: the same key still works and the job is still there.
    with process("embedded-again", command, env, tmp_path) as service:
        wait_http_ok(f"{base}/readyz", service, timeout=90)
        assert (var_dir / "dev-api-key").read_text().strip() == key
        listing = httpx.get(f"{base}/v1/jobs", headers={"Authorization": f"Bearer {key}"})
        assert [j["id"] for j in listing.json()["jobs"]] == [job_id]
