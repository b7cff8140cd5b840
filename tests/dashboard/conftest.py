"""A live service for the browser test: uvicorn and a Celery worker, as in tests/e2e.

Its own task queue and module scope: the worker is gone before tests/e2e starts its own, so
no e2e test ever shares its queue with a second worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.settings import Settings
from tests.conftest import settings_env
from tests.e2e.conftest import LiveService
from tests.support.processes import (
    free_port,
    process,
    uvicorn_command,
    wait_http_ok,
    wait_log_line,
    worker_command,
)


@pytest.fixture(scope="module")
def service_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the worker and the API write their output (worker.log, api.log)."""
    return tmp_path_factory.mktemp("dashboard-logs")


@pytest.fixture(scope="module")
def live_service(settings: Settings, service_logs: Path) -> Iterator[LiveService]:
    own = settings.model_copy(update={"task_queue": f"{settings.task_queue}-dashboard"})
    env = settings_env(own)
    logs = service_logs
    port = free_port()
    with (
        process("worker", worker_command(own.task_queue, "dashboard"), env, logs) as worker,
        process("api", uvicorn_command(port), env, logs) as api,
    ):
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", api)
        wait_log_line(worker, "ready.")
        yield LiveService(f"http://127.0.0.1:{port}", own)
