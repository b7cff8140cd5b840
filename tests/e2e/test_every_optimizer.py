"""Every registered optimizer trains a short quickstart job through the service (real processes).

All jobs are submitted at once and the one worker runs them in turn; each test then checks its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

import trainlib.spec  # noqa: F401  (registers every component)
from tests.e2e.conftest import LiveService
from tests.support.processes import REPO_ROOT, wait_job
from trainlib.registries import OPTIMIZERS

pytestmark = pytest.mark.e2e
NAMES = OPTIMIZERS.names()
WRAPPED = {"sam": {"base": {"name": "sgd", "lr": 0.05, "momentum": 0.9}}, "asam": {}}


def short_spec(name: str) -> dict[str, Any]:
    spec = yaml.safe_load((REPO_ROOT / "examples" / "quickstart.yaml").read_text())
    spec["name"] = f"smoke-{name}"
    spec["optimizer"] = {"name": name, **WRAPPED.get(name, {})}
    spec["train"] = {"steps": 20, "log_every": 10, "eval_every": 20}
    return spec


@pytest.fixture(scope="module")
def submitted(
    live_service: LiveService, team_key: tuple[str, str]
) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    headers = {"Authorization": f"Bearer {team_key[1]}"}
    with httpx.Client(base_url=live_service.base_url, headers=headers, timeout=30) as client:
        ids = {}
        for name in NAMES:
            response = client.post("/v1/jobs", json=short_spec(name))
            assert response.status_code == 201, response.text
            ids[name] = response.json()["id"]
        yield client, ids


@pytest.fixture(scope="module")
def team_key(session_factory: Any) -> tuple[str, str]:
    from service.auth import create_key
    from service.db import transaction

    with transaction(session_factory) as session:
        return "optimizer-smoke", create_key(session, "optimizer-smoke")


@pytest.mark.parametrize("name", NAMES)
def test_optimizer_trains_through_the_service(
    name: str, submitted: tuple[httpx.Client, dict[str, str]]
) -> None:
    client, ids = submitted
    job = wait_job(client, ids[name], {"succeeded", "failed", "cancelled"}, timeout=300)
    assert job["status"] == "succeeded", job
    assert job["progress"]["step"] == 20
    assert math.isfinite(job["latest_metrics"]["loss"])
    assert job["resolved_spec"]["optimizer"]["name"] == name


def test_every_optimizer_is_published(submitted: tuple[httpx.Client, dict[str, str]]) -> None:
    client, _ = submitted
    published = {e["name"] for e in client.get("/v1/components/optimizer").json()}
    assert published == set(NAMES)
