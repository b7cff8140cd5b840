"""The embedded default: `python -m service.embedded` runs the whole service on one machine.

SQLite (WAL) and Celery's filesystem broker under var/, migrations applied first, a development
API key in var/dev-api-key, one worker (--pool=solo) and the API. Running it again reuses var/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from service.auth import add_known_key, generate_key
from service.db import make_engine, make_session_factory, transaction
from service.migrate import upgrade
from service.settings import Settings

DEV_TEAM = "dev"


def dev_key(settings: Settings) -> str:
    """The development key: read from var/dev-api-key, or created there (mode 0600)."""
    path = settings.var_dir / "dev-api-key"
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


def prepare(settings: Settings) -> str:
    """Migrate the database and register the development key; returns the key."""
    engine = make_engine(settings)
    upgrade(engine)
    key = dev_key(settings)
    with transaction(make_session_factory(engine)) as session:
        add_known_key(session, DEV_TEAM, key, label="development key (make run)")
    engine.dispose()
    return key


def worker_command(settings: Settings) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
        "--pool=solo", "--concurrency=1", "-Q", settings.task_queue,
        "--loglevel=INFO", "-n", "embedded@%h",
    ]  # fmt: skip


def api_command(host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app",
        "--host", host, "--port", str(port),
    ]  # fmt: skip


def main(
    host: str = typer.Option("127.0.0.1", help="address the API listens on"),
    port: int = typer.Option(8000, help="port the API listens on"),
) -> None:
    """Start the embedded default: migrations, dev key, one worker and the API."""
    settings = Settings()
    key = prepare(settings)
    env = {**os.environ, "REGIMEN_VAR_DIR": str(Path(settings.var_dir).resolve())}
    procs = [
        subprocess.Popen(worker_command(settings), env=env),
        subprocess.Popen(api_command(host, port), env=env),
    ]
    typer.echo(f"Regimen on http://{host}:{port}  (API key: {key}, also in var/dev-api-key)")

    def stop(_signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    finally:
        stop(signal.SIGTERM, None)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    codes = [p.returncode for p in procs]
    raise typer.Exit(0 if all(c in (0, -signal.SIGTERM) for c in codes) else 1)


if __name__ == "__main__":
    typer.run(main)
