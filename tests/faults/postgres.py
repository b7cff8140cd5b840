"""Stopping and starting a private PostgreSQL server in place (same data, same port)."""

from __future__ import annotations

from tests.support.services import (
    LOCALHOST,
    PrivateServer,
    _as_account,
    _run,
    _unprivileged_account,
    find_postgres_bindir,
)


def _pg_ctl(server: PrivateServer, *args: str) -> None:
    command = [str(find_postgres_bindir() / "pg_ctl"), "-D", str(server.directory / "data")]
    _run(_as_account([*command, *args], _unprivileged_account()), server.directory, "pg_ctl")


def stop_postgres(server: PrivateServer) -> None:
    """A fast shutdown: every open connection is cut, as in a failover."""
    _pg_ctl(server, "-m", "fast", "-w", "-t", "30", "stop")


def start_postgres(server: PrivateServer) -> None:
    # The options start_private_postgres used: the same port, socket folder and settings.
    options = " ".join(
        [
            f"-p {server.port}",
            f"-k {server.directory}",
            f"-c listen_addresses={LOCALHOST}",
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
        ]
    )
    log = str(server.directory / "postgres.log")
    _pg_ctl(server, "-l", log, "-o", options, "-w", "-t", "30", "start")
