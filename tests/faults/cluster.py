"""A small live service for fault injection: an API and workers as real processes.

Each scenario gets its own task queue and artifact folder, fast leases (a dead worker is noticed
within seconds) and a fast reaper/dispatcher, so the scenarios stay short.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import (
    REPO_ROOT,
    Process,
    free_port,
    process,
    uvicorn_command,
    wait_log_line,
    wait_until,
    worker_command,
)

FINAL = {"succeeded", "failed", "cancelled"}


def fault_env(
    database_url: str, broker_url: str, var_dir: Path, queue: str, **overrides: str
) -> dict[str, str]:
    """The environment of every process of a scenario: fast leases and maintenance."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGIMEN_")}
    env.update(
        REGIMEN_DATABASE_URL=database_url,
        REGIMEN_BROKER_URL=broker_url,
        REGIMEN_VAR_DIR=str(var_dir),
        REGIMEN_TASK_QUEUE=queue,
        REGIMEN_HEARTBEAT_SECONDS="0.5",
        REGIMEN_CANCEL_POLL_SECONDS="0.5",
        REGIMEN_LEASE_SECONDS="3",
        REGIMEN_CANCEL_GRACE_SECONDS="2",
        REGIMEN_MAINTENANCE_SECONDS="0.5",
        REGIMEN_DISPATCH_GRACE_SECONDS="1",
        REGIMEN_REDISPATCH_SECONDS="600",
        REGIMEN_DB_RETRY_SECONDS="60",
        # The same single thread in every trainer: bit-identical runs to compare.
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO_ROOT),
    )
    env.update(overrides)
    return env


@dataclass
class Cluster:
    env: dict[str, str]
    logs: Path
    api_url: str
    workers: dict[str, Process] = field(default_factory=dict)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def start_worker(self, name: str, wait: bool = True) -> Process:
        proc = self._stack.enter_context(
            process(f"worker-{name}", worker_command(self.env["REGIMEN_TASK_QUEUE"], name),
                    self.env, self.logs)
        )  # fmt: skip
        self.workers[name] = proc
        if wait:
            wait_log_line(proc, "ready.", timeout=90)
        return proc

    def kill_worker(self, name: str) -> list[int]:
        """SIGKILL a worker and every trainer it started (their own process groups)."""
        proc = self.workers.pop(name)
        trainers = children(proc.popen.pid)
        os.killpg(proc.popen.pid, signal.SIGKILL)
        for pid in trainers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        proc.popen.wait(10)
        return trainers

    def close(self) -> None:
        self._stack.close()


def children(pid: int) -> list[int]:
    """Direct children of a process, from /proc (Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


@contextlib.contextmanager
def cluster(env: dict[str, str], logs: Path, workers: int = 1) -> Iterator[Cluster]:
    port = free_port()
    with process("api", uvicorn_command(port), env, logs) as api:
        running = Cluster(env, logs, f"http://127.0.0.1:{port}")
        try:
            wait_healthz(running.api_url, api)
            for i in range(workers):
                running.start_worker(f"w{i + 1}")
            yield running
        finally:
            running.close()


def wait_healthz(base: str, api: Process, timeout: float = 60.0) -> None:
    """Liveness only: readiness would wait for a broker that a scenario keeps down."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api.popen.poll() is not None:
            raise RuntimeError(f"the API exited early:\n{api.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"the API did not start:\n{api.tail()}")


def redis_command(port: int, folder: Path) -> list[str]:
    return [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(folder), "--daemonize", "no",
    ]  # fmt: skip


def start_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    """A private redis-server on a port chosen in advance (clients were told it already)."""
    from tests.support.services import redis_answers

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "redis.log").open("ab") as log:
        proc = subprocess.Popen(
            redis_command(port, folder), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    wait_until(lambda: redis_answers(f"redis://127.0.0.1:{port}"), 30, "redis-server start")
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def api_client(base_url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def tiny_spec(steps: int, **train: Any) -> dict[str, Any]:
    """An MLP on digits: about 5 ms a step on one CPU thread."""
    return {
        "name": "fault",
        "seed": 3,
        "data": {"name": "digits", "batch_size": 32},
        "model": {"name": "mlp", "hidden": [32]},
        "optimizer": {"name": "adamw", "lr": 1e-3},
        "schedule": {"name": "cosine", "warmup_steps": 10},
        "train": {"steps": steps, "log_every": 5, "eval_every": 100, **train},
    }
