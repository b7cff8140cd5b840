"""Shared fixtures: a real PostgreSQL database (migrated) and a real Redis for this test run.

The servers come from tests/support/services.py: the ones running on this machine, or private
ones started in a temporary folder when none runs. Nothing here is mocked.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from service.auth import create_key
from service.db import SessionFactory, make_engine, make_session_factory, transaction
from service.migrate import upgrade
from service.settings import Settings
from tests.support.services import postgres_server, redis_server, temporary_database

REPO_ROOT = Path(__file__).resolve().parent.parent

# One thread per test process: on a shared 2-core machine more threads only fight each other.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def postgres_base_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def database_url(postgres_base_url: str) -> Iterator[str]:
    """A fresh database for this test run, migrated to head with Alembic, dropped at the end."""
    with temporary_database(postgres_base_url) as url:
        engine = make_engine(Settings(database_url=url))
        upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture(scope="session")
def test_run_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def settings(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory, test_run_id: str
) -> Settings:
    """Settings for the PostgreSQL + Redis setup; a queue of this run's own on the broker."""
    return Settings(
        _env_file=None,
        database_url=database_url,
        broker_url=f"{redis_url}/0",
        var_dir=tmp_path_factory.mktemp("var"),
        task_queue=f"regimen-test-{test_run_id}",
        heartbeat_seconds=0.5,
        lease_seconds=30,
        cancel_grace_seconds=5,
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process (uvicorn, celery) these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGIMEN_")}
    env.update(
        REGIMEN_DATABASE_URL=settings.resolved_database_url,
        REGIMEN_BROKER_URL=settings.broker_url,
        REGIMEN_VAR_DIR=str(settings.var_dir),
        REGIMEN_TASK_QUEUE=settings.task_queue,
        REGIMEN_HEARTBEAT_SECONDS=str(settings.heartbeat_seconds),
        REGIMEN_LEASE_SECONDS=str(settings.lease_seconds),
        REGIMEN_CANCEL_GRACE_SECONDS=str(settings.cancel_grace_seconds),
        PYTHONPATH=str(REPO_ROOT),
    )
    return env


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def session_factory(engine: Engine) -> SessionFactory:
    return make_session_factory(engine)


@pytest.fixture
def session(session_factory: SessionFactory) -> Iterator[Session]:
    with session_factory() as session:
        yield session


@pytest.fixture
def team_key(session_factory: SessionFactory) -> tuple[str, str]:
    """A new team (unique name) and an API key for it: tests never see each other's jobs."""
    name = f"team-{uuid.uuid4().hex[:8]}"
    with transaction(session_factory) as session:
        key = create_key(session, name)
    return name, key
