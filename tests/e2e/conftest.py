"""A live service for end-to-end tests: uvicorn and a Celery worker on PostgreSQL + Redis."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from service.settings import Settings
from tests.conftest import settings_env
from tests.support.processes import (
    free_port,
    process,
    uvicorn_command,
    wait_http_ok,
    wait_log_line,
    worker_command,
)


@dataclass(frozen=True)
class LiveService:
    base_url: str
    settings: Settings


@pytest.fixture(scope="session")
def live_service(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    env = settings_env(settings)
    logs = tmp_path_factory.mktemp("logs")
    port = free_port()
    with (
        process("worker", worker_command(settings.task_queue, "e2e"), env, logs) as worker,
        process("api", uvicorn_command(port), env, logs) as api,
    ):
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", api)
        wait_log_line(worker, "ready.")
        yield LiveService(f"http://127.0.0.1:{port}", settings)
