"""PostgreSQL and Redis servers for the test suite.

Two public context managers, each yielding a URL:

* :func:`postgres_server` yields a server base URL without a database name, e.g.
  ``postgresql+psycopg://root@127.0.0.1:5432``. Append ``/dbname`` (or use
  :func:`temporary_database`) to get a SQLAlchemy URL.
* :func:`redis_server` yields ``redis://127.0.0.1:PORT``.

Each one looks, in order, for

1. an explicit URL in ``REGIMEN_TEST_POSTGRES_URL`` / ``REGIMEN_TEST_REDIS_URL`` (used as is);
2. a server already listening on the default local port (5432 / 6379) that we can use;
3. otherwise a private, throw-away server started here (:func:`start_private_postgres`,
   :func:`start_private_redis`) on a free port with its data in a temporary directory, stopped and
   removed on exit.

PostgreSQL refuses to run as root, so when the tests run as root the private server is initialised
and run as an unprivileged account (``postgres`` if it exists, else ``nobody``) through ``runuser``
(or ``setpriv``). Its superuser role is ``root`` with ``trust`` authentication, so the yielded URL
works from any OS user.

If no server can be found or started, :class:`ServiceUnavailable` (a ``RuntimeError``) is raised
with a message that says what to install, and the test run fails with it (never a skip).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from glob import glob
from pathlib import Path

import psycopg
import redis
from psycopg import sql

__all__ = [
    "POSTGRES_URL_ENV",
    "REDIS_URL_ENV",
    "PrivateServer",
    "ServiceUnavailable",
    "create_database",
    "drop_database",
    "find_postgres_bindir",
    "find_redis_server",
    "find_running_postgres",
    "free_port",
    "port_is_open",
    "postgres_server",
    "psycopg_conninfo",
    "redis_answers",
    "redis_server",
    "start_private_postgres",
    "start_private_redis",
    "temporary_database",
]

POSTGRES_URL_ENV = "REGIMEN_TEST_POSTGRES_URL"
REDIS_URL_ENV = "REGIMEN_TEST_REDIS_URL"

LOCALHOST = "127.0.0.1"
# Where an already running server is looked for (module globals so tests can point them elsewhere).
DEFAULT_POSTGRES_PORT = 5432
DEFAULT_REDIS_PORT = 6379
# Roles tried on an already running PostgreSQL, and databases tried for the first connection.
EXISTING_POSTGRES_USERS: tuple[str, ...] = ("root", "postgres")
EXISTING_POSTGRES_DATABASES: tuple[str, ...] = ("postgres", "test")
# Superuser role of a private PostgreSQL server.
PRIVATE_POSTGRES_SUPERUSER = "root"
# Accounts a private PostgreSQL server runs as when we are root, in order of preference.
UNPRIVILEGED_ACCOUNTS: tuple[str, ...] = ("postgres", "nobody")

STARTUP_TIMEOUT_S = 30.0
_PORT_ATTEMPTS = 3

_POSTGRES_BIN_GLOBS: tuple[str, ...] = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/usr/pgsql-*/bin",  # RHEL, Fedora (PGDG)
    "/usr/local/pgsql/bin",  # built from source
    "/opt/homebrew/opt/postgresql@*/bin",  # macOS, Homebrew
    "/usr/local/opt/postgresql@*/bin",
)
_REDIS_DIRS: tuple[str, ...] = ("/usr/bin", "/usr/local/bin", "/usr/sbin", "/opt/homebrew/bin")

_POSTGRES_HINT = (
    "install the PostgreSQL server binaries (Debian/Ubuntu: `apt-get install postgresql`; "
    "Fedora: `dnf install postgresql-server`; macOS: `brew install postgresql@16`), "
    f"or point {POSTGRES_URL_ENV} at a server, e.g. "
    f"{POSTGRES_URL_ENV}=postgresql+psycopg://USER:PASSWORD@HOST:5432"
)
_REDIS_HINT = (
    "install Redis (Debian/Ubuntu: `apt-get install redis-server`; macOS: `brew install redis`), "
    f"or point {REDIS_URL_ENV} at a server, e.g. {REDIS_URL_ENV}=redis://HOST:6379"
)


class ServiceUnavailable(RuntimeError):
    """No usable server could be found or started."""


@dataclass(frozen=True)
class PrivateServer:
    """A server started by this module for the duration of a ``with`` block."""

    url: str
    """Base URL: ``postgresql+psycopg://root@127.0.0.1:PORT`` or ``redis://127.0.0.1:PORT``."""
    host: str
    port: int
    directory: Path
    """Temporary directory holding the data, the logs and (PostgreSQL) the Unix socket."""


# --------------------------------------------------------------------------------------- helpers


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether ``host:port`` accepts a TCP connection."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_closed(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while port_is_open(host, port, timeout=0.2) and time.monotonic() < deadline:
        time.sleep(0.05)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():  # a second try after e.g. a late write by a dying server
        time.sleep(0.2)
        shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------------------ PostgreSQL


def psycopg_conninfo(base_url: str, dbname: str = "postgres") -> str:
    """A libpq URL for psycopg from a SQLAlchemy-style server URL (``postgresql+psycopg://...``).

    ``base_url`` must not carry a database name already.
    """
    scheme, sep, rest = base_url.partition("://")
    if not sep or not scheme.startswith("postgresql"):
        raise ValueError(f"not a PostgreSQL URL: {base_url!r}")
    rest, _, query = rest.partition("?")
    url = f"postgresql://{rest.rstrip('/')}/{dbname}"
    return f"{url}?{query}" if query else url


def create_database(base_url: str, name: str) -> str:
    """Create database ``name`` on the server; return its SQLAlchemy URL (``base_url/name``)."""
    with psycopg.connect(psycopg_conninfo(base_url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _database_url(base_url, name)


def drop_database(base_url: str, name: str) -> None:
    """Drop database ``name`` if it exists, disconnecting whoever is still connected to it."""
    with psycopg.connect(psycopg_conninfo(base_url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


@contextlib.contextmanager
def temporary_database(base_url: str, prefix: str = "regimen_test") -> Iterator[str]:
    """A fresh, uniquely named, empty database; yields its SQLAlchemy URL and drops it on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    url = create_database(base_url, name)
    try:
        yield url
    finally:
        drop_database(base_url, name)


def _database_url(base_url: str, name: str) -> str:
    base, _, query = base_url.partition("?")
    url = f"{base.rstrip('/')}/{name}"
    return f"{url}?{query}" if query else url


def find_running_postgres(host: str | None = None, port: int | None = None) -> str | None:
    """The base URL of a usable PostgreSQL server on ``host:port`` (default 127.0.0.1:5432).

    Usable means: a role from ``EXISTING_POSTGRES_USERS`` can connect without a password to one of
    ``EXISTING_POSTGRES_DATABASES`` and may create databases. ``None`` if there is none.
    """
    host = LOCALHOST if host is None else host
    port = DEFAULT_POSTGRES_PORT if port is None else port
    if not port_is_open(host, port):
        return None
    for user in EXISTING_POSTGRES_USERS:
        for dbname in EXISTING_POSTGRES_DATABASES:
            try:
                with psycopg.connect(
                    host=host, port=port, user=user, dbname=dbname, connect_timeout=3
                ) as conn:
                    row = conn.execute(
                        "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
                    ).fetchone()
            except psycopg.Error:
                continue
            if row is not None and bool(row[0]):
                return f"postgresql+psycopg://{user}@{host}:{port}"
            break  # the role works but may not create databases: try the next role
    return None


def find_postgres_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl`` (of the same PostgreSQL version).

    ``PATH`` first (symlinks resolved, so ``/usr/local/bin/pg_ctl`` leads to its real directory),
    then the usual install locations, newest version first.
    """
    candidates: list[Path] = []
    for name in ("pg_ctl", "initdb"):
        found = shutil.which(name)
        if found is not None:
            candidates.append(Path(found).resolve().parent)
            candidates.append(Path(found).parent)
    versioned: list[Path] = []
    for pattern in _POSTGRES_BIN_GLOBS:
        versioned.extend(Path(p) for p in glob(pattern))
    versioned.sort(key=_version_key, reverse=True)
    candidates.extend(versioned)
    for directory in candidates:
        if all(os.access(directory / tool, os.X_OK) for tool in ("initdb", "pg_ctl")):
            return directory
    raise ServiceUnavailable(
        "cannot start a private PostgreSQL server: `initdb` and `pg_ctl` were not found on PATH "
        f"nor in {', '.join(_POSTGRES_BIN_GLOBS)}; {_POSTGRES_HINT}"
    )


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", str(path))) or (0,)


def _unprivileged_account() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as when we are root; ``None`` when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in UNPRIVILEGED_ACCOUNTS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ServiceUnavailable(
        "cannot start a private PostgreSQL server: running as root, and PostgreSQL refuses root, "
        f"but none of the accounts {', '.join(UNPRIVILEGED_ACCOUNTS)} exists to run it as; "
        f"{_POSTGRES_HINT}"
    )


def _as_account(command: Sequence[str], account: pwd.struct_passwd | None) -> list[str]:
    if account is None:
        return list(command)
    runuser = shutil.which("runuser") or next(
        (p for p in ("/usr/sbin/runuser", "/sbin/runuser") if os.access(p, os.X_OK)), None
    )
    if runuser is not None:
        return [runuser, "-u", account.pw_name, "--", *command]
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        return [
            setpriv,
            f"--reuid={account.pw_uid}",
            f"--regid={account.pw_gid}",
            "--clear-groups",
            "--",
            *command,
        ]
    raise ServiceUnavailable(
        "cannot start a private PostgreSQL server as root: neither `runuser` nor `setpriv` "
        "(Debian: util-linux) is available to drop privileges; run the tests as a normal user "
        f"or {_POSTGRES_HINT}"
    )


def _postgres_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")
    return env


def _run(command: Sequence[str], cwd: Path, what: str, timeout: float = 120.0) -> None:
    try:
        result = subprocess.run(
            command,
            cwd=cwd,
            env=_postgres_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceUnavailable(f"{what} failed: {exc}") from exc
    if result.returncode != 0:
        raise ServiceUnavailable(
            f"{what} failed (exit {result.returncode}): {shlex.join(command)}\n"
            f"{result.stdout}{result.stderr}".rstrip()
        )


def _make_server_directory(prefix: str, account: pwd.struct_passwd | None) -> Path:
    # An unprivileged account must be able to reach the directory: use /tmp rather than a TMPDIR
    # that may sit under root's home.
    base = "/tmp" if account is not None and os.path.isdir("/tmp") else None
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    if account is not None:
        os.chown(directory, account.pw_uid, account.pw_gid)
    return directory


@contextlib.contextmanager
def start_private_postgres() -> Iterator[PrivateServer]:
    """Start a throw-away PostgreSQL server on a free port of 127.0.0.1.

    ``initdb`` (superuser ``root``, ``trust`` authentication, no fsync) into a fresh temporary
    directory, ``pg_ctl start -w``; on exit ``pg_ctl stop -m fast`` and the directory is removed.
    Runs as ``postgres``/``nobody`` via ``runuser`` when we are root.
    """
    bindir = find_postgres_bindir()
    account = _unprivileged_account()
    directory = _make_server_directory("regimen-pg-", account)
    data = directory / "data"
    log = directory / "postgres.log"
    started = False
    port = 0
    try:
        _run(
            _as_account(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    PRIVATE_POSTGRES_SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                account,
            ),
            cwd=directory,
            what="initdb",
        )
        for attempt in range(_PORT_ATTEMPTS):
            port = free_port()
            options = " ".join(
                [
                    f"-p {port}",
                    f"-k {shlex.quote(str(directory))}",
                    f"-c listen_addresses={LOCALHOST}",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                ]
            )
            command = [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                options,
                "-w",
                "-t",
                str(int(STARTUP_TIMEOUT_S)),
                "start",
            ]
            try:
                _run(_as_account(command, account), cwd=directory, what="pg_ctl start")
            except ServiceUnavailable as exc:
                in_use = "already in use" in _tail(log, 10)
                if in_use and attempt + 1 < _PORT_ATTEMPTS:
                    continue  # lost a race for the port: try another one
                raise ServiceUnavailable(f"{exc}\nserver log ({log}):\n{_tail(log)}") from exc
            started = True
            break
        url = f"postgresql+psycopg://{PRIVATE_POSTGRES_SUPERUSER}@{LOCALHOST}:{port}"
        _wait_for_postgres(url, log)
        yield PrivateServer(url=url, host=LOCALHOST, port=port, directory=directory)
    finally:
        if started:
            _stop_postgres(bindir, data, account, directory, port)
        _remove_tree(directory)


def _wait_for_postgres(url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            with psycopg.connect(psycopg_conninfo(url), connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.Error as exc:
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"private PostgreSQL server at {url} does not accept connections: {exc}\n"
                    f"server log ({log}):\n{_tail(log)}"
                ) from exc
            time.sleep(0.1)


def _stop_postgres(
    bindir: Path, data: Path, account: pwd.struct_passwd | None, directory: Path, port: int
) -> None:
    for mode in ("fast", "immediate"):
        command = [str(bindir / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "-t", "30", "stop"]
        try:
            _run(_as_account(command, account), cwd=directory, what="pg_ctl stop", timeout=60)
            break
        except ServiceUnavailable:
            continue
    else:  # pg_ctl could not stop it: kill the postmaster by its pid file
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((data / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)
    _wait_until_closed(LOCALHOST, port)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server for the tests; yields its base URL (no database name).

    ``REGIMEN_TEST_POSTGRES_URL`` if set (as is), else a usable server on 127.0.0.1:5432
    (role ``root`` or ``postgres``), else a private server (:func:`start_private_postgres`).
    """
    explicit = os.environ.get(POSTGRES_URL_ENV)
    if explicit:
        yield explicit
        return
    running = find_running_postgres()
    if running is not None:
        yield running
        return
    with start_private_postgres() as server:
        yield server.url


# ----------------------------------------------------------------------------------------- Redis


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    """Whether the Redis server at ``url`` answers PING."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def find_redis_server() -> Path:
    """The ``redis-server`` executable: ``PATH`` first, then the usual install locations."""
    found = shutil.which("redis-server")
    if found is not None:
        return Path(found)
    for directory in _REDIS_DIRS:
        candidate = Path(directory) / "redis-server"
        if os.access(candidate, os.X_OK):
            return candidate
    raise ServiceUnavailable(
        "cannot start a private Redis server: `redis-server` was not found on PATH nor in "
        f"{', '.join(_REDIS_DIRS)}; {_REDIS_HINT}"
    )


@contextlib.contextmanager
def start_private_redis() -> Iterator[PrivateServer]:
    """Start a throw-away ``redis-server`` (no persistence) on a free port of 127.0.0.1.

    Runs as a child process in the foreground; terminated on exit and its directory removed.
    """
    executable = find_redis_server()
    directory = _make_server_directory("regimen-redis-", None)
    log = directory / "redis.log"
    process: subprocess.Popen[bytes] | None = None
    port = 0
    try:
        for attempt in range(_PORT_ATTEMPTS):
            port = free_port()
            url = f"redis://{LOCALHOST}:{port}"
            with log.open("ab") as log_file:
                process = subprocess.Popen(
                    [
                        str(executable),
                        "--port",
                        str(port),
                        "--bind",
                        LOCALHOST,
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(directory),
                        "--daemonize",
                        "no",
                    ],
                    cwd=directory,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if _wait_for_redis(url, process):
                yield PrivateServer(url=url, host=LOCALHOST, port=port, directory=directory)
                return
            _stop_process(process)
            in_use = "already in use" in _tail(log, 10)
            if not (in_use and attempt + 1 < _PORT_ATTEMPTS):
                raise ServiceUnavailable(
                    f"private Redis server did not start on port {port} "
                    f"(exit code {process.returncode}); log ({log}):\n{_tail(log)}"
                )
    finally:
        if process is not None:
            _stop_process(process)
            _wait_until_closed(LOCALHOST, port)
        _remove_tree(directory)


def _wait_for_redis(url: str, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if redis_answers(url, timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A Redis server for the tests; yields ``redis://HOST:PORT``.

    ``REGIMEN_TEST_REDIS_URL`` if set (as is), else 127.0.0.1:6379 if it answers PING, else a
    private server (:func:`start_private_redis`).
    """
    explicit = os.environ.get(REDIS_URL_ENV)
    if explicit:
        yield explicit
        return
    default_url = f"redis://{LOCALHOST}:{DEFAULT_REDIS_PORT}"
    if port_is_open(LOCALHOST, DEFAULT_REDIS_PORT) and redis_answers(default_url):
        yield default_url
        return
    with start_private_redis() as server:
        yield server.url
