"""`regimen sweep` against the live service: a 2×2 grid becomes four jobs that all succeed, and
the summary names the best child by the chosen metric."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from client import Client
from client.cli import app
from tests.e2e.conftest import LiveService

pytestmark = pytest.mark.e2e

SPEC = {
    "name": "cli-sweep",
    "data": {"name": "digits", "batch_size": 64},
    "model": {"name": "mlp", "hidden": [32]},
    "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
    "train": {"steps": 30, "log_every": 10, "eval_every": 30},
}


def test_a_two_by_two_grid_runs_four_jobs_and_names_the_best(
    live_service: LiveService, team_key: tuple[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    env = {"REGIMEN_URL": live_service.base_url, "REGIMEN_API_KEY": team_key[1]}
    args = ["sweep", str(path), "--grid", "optimizer.lr=1e-3,1e-1", "--grid", "seed=1,2"]
    result = CliRunner().invoke(
        app, [*args, "--metric", "val_loss", "--goal", "min", "--wait"], env=env
    )
    assert result.exit_code == 0, result.output
    sweep_id = next(x for x in result.stdout.splitlines() if x.startswith("sweep ")).split()[1]
    sweep_id = sweep_id.rstrip(":")

    with Client(live_service.base_url, team_key[1]) as sdk:
        summary = sdk.sweep(sweep_id)
        jobs = [sdk.job(c.job_id) for c in summary.children]
    assert summary.counts == {"succeeded": 4}
    assert sorted((c.overrides["optimizer.lr"], c.overrides["seed"]) for c in summary.children) == [
        (1e-3, 1),
        (1e-3, 2),
        (1e-1, 1),
        (1e-1, 2),
    ]
    for child, job in zip(summary.children, jobs, strict=True):
        assert job.resolved_spec is not None
        assert job.resolved_spec["optimizer"]["lr"] == child.overrides["optimizer.lr"]
        assert job.resolved_spec["seed"] == child.overrides["seed"]
        assert child.value == job.latest_metrics["val_loss"]
    best = min(jobs, key=lambda j: j.latest_metrics["val_loss"])
    assert summary.best is not None and summary.best.job_id == best.id
    assert f"best (min val_loss): {best.id}" in result.stdout

    listed = CliRunner().invoke(app, ["sweeps"], env=env)
    assert listed.exit_code == 0 and sweep_id in listed.stdout and "4 succeeded" in listed.stdout
    shown = CliRunner().invoke(app, ["sweeps", sweep_id], env=env)
    assert shown.exit_code == 0 and f"best (min val_loss): {best.id}" in shown.stdout
