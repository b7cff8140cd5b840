"""The `regimen` command through typer's CliRunner against a live service (uvicorn + Celery on
PostgreSQL and Redis): exit codes, the live progress bar, and server messages, not tracebacks.
"""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner, Result

from client import Client
from client.cli import app
from service.auth import create_key
from service.db import SessionFactory, transaction
from tests.e2e.conftest import LiveService

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = REPO_ROOT / "examples" / "quickstart.yaml"
SHORT = ["--set", "train.steps=60", "--set", "train.eval_every=30", "--set", "train.log_every=10"]
# No normalization and SGD at lr 10: the loss overflows within the first log interval.
DIVERGING = ["--set", "model.norm=none", "--set", "optimizer={name: sgd, lr: 10, momentum: 0.9}"]


@pytest.fixture(scope="module")
def env(live_service: LiveService, session_factory: SessionFactory) -> dict[str, str]:
    """One team for the module: its jobs are shared by the tests that only read them."""
    with transaction(session_factory) as session:
        key = create_key(session, f"cli-{uuid.uuid4().hex[:8]}")
    return {"REGIMEN_URL": live_service.base_url, "REGIMEN_API_KEY": key}


@pytest.fixture(scope="module")
def waited(env: dict[str, str]) -> Result:
    """`regimen submit --wait` of a short quickstart run, once for the module."""
    return regimen(env, "submit", str(QUICKSTART), *SHORT, "--set", "name=cli-listed", "--wait")


def regimen(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def job_id_of(result: Result) -> str:
    line = next(x for x in result.stdout.splitlines() if x.startswith("submitted "))
    return line.split()[1]


def test_submit_wait_shows_the_progress_bar_and_exits_zero_when_the_job_succeeds(
    env: dict[str, str], waited: Result, live_service: LiveService
) -> None:
    result = waited
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "60/60" in result.stdout  # the bar's step/total, filled
    assert "val_acc 0." in result.stdout
    assert "succeeded" in result.stdout
    with Client(live_service.base_url, env["REGIMEN_API_KEY"]) as sdk:
        job = sdk.job(job_id_of(result))
    assert job.status == "succeeded"
    assert job.resolved_spec is not None and job.resolved_spec["train"]["steps"] == 60
    assert f"val_acc {job.latest_metrics['val_accuracy']:.4g}" in result.stdout


def test_a_failing_job_exits_non_zero_with_its_reason(env: dict[str, str]) -> None:
    result = regimen(env, "submit", str(QUICKSTART), *SHORT, *DIVERGING, "--wait")
    assert result.exit_code == 1, result.output
    assert "failed" in result.stderr
    assert "diverged" in result.stderr
    assert "lower the learning rate" in result.stderr
    assert "Traceback" not in result.output


def test_a_bad_spec_prints_the_servers_422_with_field_paths_and_exits_two(
    env: dict[str, str],
) -> None:
    for command in ("submit", "validate"):
        result = regimen(env, command, str(QUICKSTART), "--set", "optimizer.name=adamm")
        assert result.exit_code == 2, result.output
        lines = result.stderr.splitlines()
        assert lines[0] == "error (422): invalid job spec"
        assert lines[1].startswith("  optimizer: unknown optimizer 'adamm'; valid names: ")
        assert "adamw" in lines[1]
        assert "Traceback" not in result.output
    result = regimen(env, "validate", str(QUICKSTART), "--set", "train.steps=-1")
    assert result.exit_code == 2
    assert "  train.steps: Input should be greater than or equal to 1" in result.stderr


def test_validate_accepts_a_good_spec(env: dict[str, str]) -> None:
    result = regimen(env, "validate", str(QUICKSTART))
    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout and "spec_hash" in result.stdout


def test_ls_status_watch_metrics_and_cancel_of_a_finished_job(
    env: dict[str, str], waited: Result, live_service: LiveService
) -> None:
    job_id = job_id_of(waited)

    watched = regimen(env, "watch", job_id)
    assert watched.exit_code == 0, watched.output
    assert "60/60" in watched.stdout

    listed = regimen(env, "ls")
    assert listed.exit_code == 0 and job_id in listed.stdout and "cli-listed" in listed.stdout
    shown = regimen(env, "status", job_id)
    assert shown.exit_code == 0 and "succeeded" in shown.stdout and "60/60" in shown.stdout

    exported = regimen(env, "metrics", job_id, "--csv")
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    with Client(live_service.base_url, env["REGIMEN_API_KEY"]) as sdk:
        stored = sdk.metrics(job_id)
    assert [int(r["step"]) for r in rows] == stored.series["loss"].steps
    assert [float(r["loss"]) for r in rows] == stored.series["loss"].values
    assert [float(r["val_accuracy"]) for r in rows if r["val_accuracy"]] == (
        stored.series["val_accuracy"].values
    )

    # A finished job cannot be cancelled: the server's 409 message, exit 1.
    cancelled = regimen(env, "cancel", job_id)
    assert cancelled.exit_code == 1
    assert "(409)" in cancelled.stderr and "cannot become cancelled" in cancelled.stderr


def test_cancel_a_running_job_and_watch_exits_non_zero(env: dict[str, str]) -> None:
    long = ["--set", "train.steps=100000", "--set", "train.log_every=50"]
    job_id = job_id_of(regimen(env, "submit", str(QUICKSTART), *long))
    result = regimen(env, "cancel", job_id)
    assert result.exit_code == 0, result.output
    assert job_id in result.stdout
    watched = regimen(env, "watch", job_id)
    assert watched.exit_code == 1
    assert "cancelled" in watched.stderr


def test_unknown_jobs_and_an_unreachable_service_are_messages_not_tracebacks(
    env: dict[str, str],
) -> None:
    missing = regimen(env, "status", "00000000-0000-0000-0000-000000000000")
    assert missing.exit_code == 1
    assert "(404)" in missing.stderr and "no job" in missing.stderr
    malformed = regimen(env, "status", "not-an-id")
    assert malformed.exit_code == 2
    assert "  job_id: Input should be a valid UUID" in malformed.stderr
    down = regimen({**env, "REGIMEN_URL": "http://127.0.0.1:9"}, "ls")
    assert down.exit_code == 1
    assert "cannot reach the service" in down.stderr
    assert "Traceback" not in down.output


def test_components_lists_kinds_and_shows_one_schema_and_paper(env: dict[str, str]) -> None:
    everything = regimen(env, "components")
    assert everything.exit_code == 0
    assert "adamw" in everything.stdout and "regularizer" in everything.stdout
    one = regimen(env, "components", "optimizer", "adamw")
    assert one.exit_code == 0, one.output
    assert "paper:" in one.stdout and "Loshchilov" in one.stdout
    assert '"weight_decay"' in one.stdout  # the settings schema
    unknown = regimen(env, "components", "optimizer", "adamm")
    assert unknown.exit_code == 2 and "no optimizer named 'adamm'" in unknown.stderr


def test_run_trains_locally_without_the_service(tmp_path: Path) -> None:
    spec = yaml.safe_load(QUICKSTART.read_text())
    spec["train"] = {"steps": 20, "log_every": 10, "eval_every": 20}
    spec["name"] = "[bold]not markup[/bold]"  # user text is printed as it is
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {"REGIMEN_URL": "http://127.0.0.1:9"}  # never contacted
    result = regimen(env, "run", str(path), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "20/20" in result.stdout and "completed" in result.stdout
    assert "[bold]not markup[/bold]" in result.stdout
    assert (tmp_path / "out" / "checkpoint.safetensors").is_file()
    failed = regimen(env, "run", str(path), *DIVERGING)
    assert failed.exit_code == 1 and "diverged" in failed.stderr


def test_datasets_upload_prints_the_id_and_ls_lists_it(env: dict[str, str], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "blobs.npz"
    np.savez(path, x=rng.normal(size=(60, 4)).astype(np.float32), y=rng.integers(0, 3, 60))
    result = regimen(env, "datasets", "upload", str(path))
    assert result.exit_code == 0, result.output
    dataset_id = result.stdout.split()[1]
    uuid.UUID(dataset_id)
    listed = regimen(env, "datasets", "ls")
    assert listed.exit_code == 0 and dataset_id in listed.stdout and "blobs.npz" in listed.stdout

    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    refused = regimen(env, "datasets", "upload", str(bad))
    assert refused.exit_code == 2, refused.output
    assert "(422)" in refused.stderr and "Traceback" not in refused.output
