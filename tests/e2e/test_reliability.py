"""Checkpoints and forks through the live service (uvicorn + a Celery worker).

Published checkpoints are listed, pruned (the last k and the best) and downloadable; a fork with
no changes continues the parent's whole state and ends with its exact weights; a fork with
changes starts from the parent's weights with fresh optimizer state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from safetensors import safe_open
from safetensors.torch import load

from tests.e2e.conftest import LiveService
from tests.support.processes import wait_job

pytestmark = pytest.mark.e2e
FINAL = {"succeeded", "failed", "cancelled"}


def spec() -> dict[str, Any]:
    return {
        "name": "fork-parent",
        "seed": 5,
        "data": {"name": "digits", "batch_size": 32},
        "model": {"name": "mlp", "hidden": [32]},
        "optimizer": {"name": "adamw", "lr": 2e-3},
        "train": {"steps": 200, "log_every": 10, "eval_every": 50, "checkpoint_every": 50},
    }


@pytest.fixture
def client(live_service: LiveService, team_key: tuple[str, str]) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {team_key[1]}"}
    with httpx.Client(base_url=live_service.base_url, headers=headers, timeout=30) as client:
        yield client


def weights(client: httpx.Client, job_id: str) -> dict[str, Any]:
    blob = client.get(f"/v1/jobs/{job_id}/artifacts/checkpoint.safetensors")
    assert blob.status_code == 200, blob.text
    return load(blob.content)


def test_checkpoints_are_listed_pruned_downloadable_and_forkable(
    client: httpx.Client, live_service: LiveService
) -> None:
    parent = client.post("/v1/jobs", json=spec()).json()["id"]
    assert wait_job(client, parent, FINAL)["status"] == "succeeded"

    listed = client.get(f"/v1/jobs/{parent}/checkpoints").json()
    val = client.get(f"/v1/jobs/{parent}/metrics", params={"name": "val_loss"}).json()
    series = val["series"]["val_loss"]
    by_step = dict(zip(series["steps"], series["values"], strict=True))
    best = min((by_step[s], s) for s in (50, 100, 150, 200))[1]
    # The last three (keep_checkpoints = 3) and the best by val_loss.
    assert [c["step"] for c in listed] == sorted({100, 150, 200, best})
    for row in listed:
        assert row["name"] == f"state-{row['step']:08d}.safetensors" and row["attempt"] == 1
        assert "val_loss" in row["metrics"]
    folder = live_service.settings.var_dir / f"download-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    blob = client.get(f"/v1/jobs/{parent}/artifacts/{listed[-1]['name']}")
    assert blob.status_code == 200
    (folder / "state.safetensors").write_bytes(blob.content)
    with safe_open(str(folder / "state.safetensors"), framework="pt") as fh:
        assert fh.metadata()["step"] == "200"

    # No changes: the whole state at step 100 continues to the parent's exact end.
    same = client.post(f"/v1/jobs/{parent}/fork", json={"checkpoint": "state-00000100.safetensors"})
    assert same.status_code == 201, same.text
    assert same.json()["parent_job_id"] == parent
    assert same.json()["forked_from"] == "state-00000100.safetensors"
    # A lower learning rate: the latest weights, fresh optimizer and schedule from step 0.
    changed = client.post(f"/v1/jobs/{parent}/fork", json={"changes": {"optimizer.lr": 1e-4}})
    assert changed.status_code == 201, changed.text
    assert changed.json()["forked_from"] == "state-00000200.safetensors"
    assert changed.json()["resolved_spec"]["optimizer"]["lr"] == 1e-4

    continued = wait_job(client, same.json()["id"], FINAL)
    assert continued["status"] == "succeeded", continued
    loss_steps = client.get(f"/v1/jobs/{continued['id']}/metrics").json()["series"]["loss"]
    assert loss_steps["steps"] == list(range(110, 201, 10))
    theirs, ours = weights(client, parent), weights(client, continued["id"])
    assert all(ours[k].equal(theirs[k]) for k in theirs)

    warm = wait_job(client, changed.json()["id"], FINAL)
    assert warm["status"] == "succeeded", warm
    series = client.get(f"/v1/jobs/{warm['id']}/metrics").json()["series"]
    assert series["loss"]["steps"][0] == 10 and series["lr"]["values"][-1] == 1e-4
    # Warm-started from trained weights: far better than a fresh start at its first log.
    parent_series = client.get(f"/v1/jobs/{parent}/metrics").json()["series"]
    assert series["loss"]["values"][0] < parent_series["loss"]["values"][0]


def test_fork_refusals(client: httpx.Client, live_service: LiveService) -> None:
    parent = client.post("/v1/jobs", json={**spec(), "name": "fork-refusals"}).json()["id"]
    assert wait_job(client, parent, FINAL)["status"] == "succeeded"
    missing = client.post(f"/v1/jobs/{parent}/fork", json={"checkpoint": "state-9.safetensors"})
    assert missing.status_code == 409 and "no checkpoint named" in missing.json()["detail"]
    invalid = client.post(f"/v1/jobs/{parent}/fork", json={"changes": {"optimizer.lr": -1}})
    assert invalid.status_code == 422 and "optimizer" in invalid.text
    unknown = client.post(f"/v1/jobs/{parent}/fork", json={"chekpoint": "x"})
    assert unknown.status_code == 422
    assert client.post(f"/v1/jobs/{uuid.uuid4()}/fork", json={}).status_code == 404
    assert client.get(f"/v1/jobs/{uuid.uuid4()}/checkpoints").status_code == 404
