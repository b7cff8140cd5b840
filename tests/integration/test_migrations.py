"""Alembic: upgrade, downgrade, upgrade again on a new database; the models match the migrations.

On the real PostgreSQL (a fresh database of its own) and on a SQLite file (the embedded default).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from models import Base
from service.db import make_engine
from service.migrate import downgrade, upgrade
from service.settings import Settings
from tests.support.services import temporary_database

# Every table the models declare, and the newest revision in migrations/versions.
EXPECTED_TABLES = set(Base.metadata.tables)
HEAD = ScriptDirectory.from_config(
    Config(str(Path(__file__).parents[2] / "alembic.ini"))
).get_current_head()


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema_diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={"compare_type": True, "compare_server_default": True},
        )
        return list(compare_metadata(context, Base.metadata))


@pytest.fixture
def postgres_engine(postgres_base_url: str) -> Iterator[Engine]:
    with temporary_database(postgres_base_url, prefix="regimen_migr") as url:
        engine = make_engine(Settings(_env_file=None, database_url=url))
        try:
            yield engine
        finally:
            engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    settings = Settings(_env_file=None, var_dir=tmp_path / "var")
    assert settings.is_sqlite  # the embedded default: no database_url means SQLite under var/
    engine = make_engine(settings)
    try:
        yield engine
    finally:
        engine.dispose()


def check_round_trip(engine: Engine) -> None:
    assert tables(engine) == set()

    upgrade(engine)
    assert tables(engine) == EXPECTED_TABLES | {"alembic_version"}
    assert current_revision(engine) == HEAD
    assert schema_diff(engine) == []

    downgrade(engine)
    assert tables(engine) == {"alembic_version"}
    assert current_revision(engine) is None

    upgrade(engine)
    assert tables(engine) == EXPECTED_TABLES | {"alembic_version"}
    assert current_revision(engine) == HEAD
    assert schema_diff(engine) == []

    # Upgrading an up-to-date database is a no-op, not an error.
    upgrade(engine)
    assert current_revision(engine) == HEAD


def test_postgres_upgrade_downgrade_upgrade(postgres_engine: Engine) -> None:
    assert postgres_engine.dialect.name == "postgresql"
    check_round_trip(postgres_engine)
    # the JSON columns are JSONB on PostgreSQL
    columns = {c["name"]: c for c in inspect(postgres_engine).get_columns("jobs")}
    assert type(columns["spec"]["type"]).__name__ == "JSONB"


def test_sqlite_upgrade_downgrade_upgrade(sqlite_engine: Engine, tmp_path: Path) -> None:
    assert sqlite_engine.dialect.name == "sqlite"
    check_round_trip(sqlite_engine)
    assert (tmp_path / "var" / "regimen.db").is_file()
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_the_session_database_is_at_head_with_no_diff(engine: Engine) -> None:
    """The conftest's migrated database (what the other integration tests use)."""
    assert current_revision(engine) == HEAD
    assert schema_diff(engine) == []
