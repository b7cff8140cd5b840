"""Real processes for end-to-end tests: uvicorn, a Celery worker, the embedded launcher."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.services import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)


@contextlib.contextmanager
def process(
    name: str, command: Sequence[str], env: dict[str, str], log_dir: Path
) -> Iterator[Process]:
    log = log_dir / f"{name}.log"
    with log.open("ab") as fh:
        popen = subprocess.Popen(
            list(command), cwd=REPO_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    proc = Process(name, popen, log)
    try:
        yield proc
    finally:
        proc.stop()


def wait_http_ok(url: str, proc: Process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout} s:\n{proc.tail()}")


def wait_log_line(proc: Process, needle: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        if needle in proc.tail(400):
            return
        time.sleep(0.25)
    raise TimeoutError(f"{proc.name} did not log {needle!r} in {timeout} s:\n{proc.tail()}")


def uvicorn_command(port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip


def worker_command(queue: str, node: str) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--pool=solo",
        "--concurrency=1", "-Q", queue, "-n", f"{node}@%h", "--loglevel=INFO",
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def wait_job(
    client: httpx.Client, job_id: str, statuses: Collection[str], timeout: float = 120.0
) -> dict[str, Any]:
    """Poll GET /v1/jobs/{id} until the job reaches one of `statuses`."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/v1/jobs/{job_id}")
        response.raise_for_status()
        job = response.json()
        if job["status"] in statuses:
            return job
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id} still {job.get('status')} after {timeout} s")


__all__ = [
    "Process",
    "free_port",
    "process",
    "uvicorn_command",
    "wait_http_ok",
    "wait_job",
    "wait_log_line",
    "worker_command",
]


def wait_until(check: Any, timeout: float, what: str, poll: float = 0.1) -> Any:
    """Poll `check()` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"{what}: not within {timeout} s")
