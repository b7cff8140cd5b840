"""The private PostgreSQL and Redis servers of tests/support/services.py work and clean up."""

from __future__ import annotations

import os

import psycopg
import pytest
import redis

from tests.support import services
from tests.support.services import (
    port_is_open,
    postgres_server,
    psycopg_conninfo,
    redis_server,
    start_private_postgres,
    start_private_redis,
    temporary_database,
)


def test_private_postgres_serves_and_cleans_up() -> None:
    with start_private_postgres() as server:
        assert server.url == f"postgresql+psycopg://root@127.0.0.1:{server.port}"
        assert server.directory.is_dir()
        assert port_is_open(server.host, server.port)
        with psycopg.connect(psycopg_conninfo(server.url), connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            row = conn.execute(
                "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            assert row == ("root", True)
        # the yielded URL is a base URL: a database name can be appended for SQLAlchemy
        with temporary_database(server.url) as db_url:
            assert db_url.startswith(server.url + "/regimen_test_")
            dbname = db_url.rsplit("/", 1)[1]
            with psycopg.connect(psycopg_conninfo(server.url, dbname)) as conn:
                conn.execute("CREATE TABLE t (x int)")
                conn.execute("INSERT INTO t VALUES (42)")
                assert conn.execute("SELECT x FROM t").fetchone() == (42,)
        with psycopg.connect(psycopg_conninfo(server.url)) as conn:
            gone = conn.execute(
                "SELECT count(*) FROM pg_database WHERE datname = %s", (dbname,)
            ).fetchone()
            assert gone == (0,)
        port, directory = server.port, server.directory
    assert not port_is_open("127.0.0.1", port)
    assert not directory.exists()


def test_private_redis_serves_and_cleans_up() -> None:
    with start_private_redis() as server:
        assert server.url == f"redis://127.0.0.1:{server.port}"
        assert server.directory.is_dir()
        client = redis.Redis.from_url(server.url, socket_timeout=5)
        try:
            assert client.ping() is True
            client.set("regimen:test", "1")
            assert client.get("regimen:test") == b"1"
        finally:
            client.close()
        port, directory = server.port, server.directory
    assert not port_is_open("127.0.0.1", port)
    assert not directory.exists()
    assert not any(name.endswith((".rdb", ".aof")) for name in os.listdir("."))


def test_explicit_urls_are_used_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(services.POSTGRES_URL_ENV, "postgresql+psycopg://u:p@db.example:6543")
    monkeypatch.setenv(services.REDIS_URL_ENV, "redis://cache.example:7000/3")
    with postgres_server() as pg_url, redis_server() as redis_url:
        assert pg_url == "postgresql+psycopg://u:p@db.example:6543"
        assert redis_url == "redis://cache.example:7000/3"


def test_fallback_to_private_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no env URL and nothing on the default ports, the public helpers start private ones."""
    monkeypatch.delenv(services.POSTGRES_URL_ENV, raising=False)
    monkeypatch.delenv(services.REDIS_URL_ENV, raising=False)
    closed = services.free_port()  # nothing listens there
    monkeypatch.setattr(services, "DEFAULT_POSTGRES_PORT", closed)
    monkeypatch.setattr(services, "DEFAULT_REDIS_PORT", closed)
    with postgres_server() as pg_url:
        assert not pg_url.endswith(f":{closed}")
        with psycopg.connect(psycopg_conninfo(pg_url), connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    with redis_server() as redis_url:
        assert redis_url != f"redis://127.0.0.1:{closed}"
        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        try:
            assert client.ping() is True
        finally:
            client.close()


def test_psycopg_conninfo() -> None:
    assert psycopg_conninfo("postgresql+psycopg://root@127.0.0.1:5432") == (
        "postgresql://root@127.0.0.1:5432/postgres"
    )
    assert psycopg_conninfo("postgresql://u:p@h:1/?sslmode=disable", "x") == (
        "postgresql://u:p@h:1/x?sslmode=disable"
    )
    with pytest.raises(ValueError):
        psycopg_conninfo("redis://127.0.0.1:6379")
