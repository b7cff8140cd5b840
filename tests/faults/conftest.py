"""Fixtures for the fault-injection scenarios: a scenario's environment and an API client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.settings import Settings
from tests.faults.cluster import fault_env


@pytest.fixture
def queue_name(settings: Settings) -> str:
    return f"{settings.task_queue}-fault-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def scenario_env(settings: Settings, tmp_path: Path, queue_name: str) -> dict[str, str]:
    """The shared test PostgreSQL and Redis, a queue and artifact folder of this scenario."""
    return fault_env(
        settings.resolved_database_url, settings.broker_url, tmp_path / "var", queue_name
    )


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "logs"
    folder.mkdir()
    yield folder
