"""The job supervisor: claim, spawn the trainer, heartbeat the lease, relay cancel, record.

Never `revoke(terminate=True)`: a cancel is a flag in the database that the heartbeat sees; the
trainer gets SIGTERM (checkpoint and stop at the next step), then SIGKILL after a grace period.
The heartbeat survives a short database outage: the trainer is killed only once the lease has
really run out (another worker may then own the job).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy.orm import Session

from models import Job
from models.base import utcnow
from service.db import SessionFactory, transaction
from service.jobs import claim_job, finish_job, renew_lease, retry_or_fail
from service.logging import bind
from service.outages import is_connection_error
from service.scheduler import Policy, take_for_worker
from service.settings import Settings
from service.states import RETRYABLE, FailureReason, JobStatus
from service.storage import ArtifactStore
from workers.outcome import LEASE_LOST_EXIT, Outcome

log = logging.getLogger("regimen.supervisor")
POLL_SECONDS = 0.2
T = TypeVar("T")


@dataclass
class _Watch:
    cancel_sent_at: float | None = None
    timed_out: bool = False
    lease_lost: bool = False


class Supervisor:
    def __init__(
        self, settings: Settings, factory: SessionFactory, store: ArtifactStore, owner: str
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.store = store
        self.owner = owner

    def run(self, job_id: uuid.UUID) -> str:
        policy = Policy.of(self.settings)
        with transaction(self.factory) as session:
            # Only with a place here: the GPUs the scheduler booked for it on this worker.
            place = take_for_worker(session, job_id, self.owner, utcnow(), policy)
            gpus = list(place.gpus) if place is not None else []
            attempt = (
                claim_job(session, job_id, self.owner, self.settings.lease_seconds)
                if place is not None
                else None
            )
            job = session.get(Job, job_id) if attempt is not None else None
            max_runtime = job.resolved_spec["resources"]["max_runtime_s"] if job else 0
        if attempt is None:
            log.info(
                "job %s is not queued for this worker (claimed, finished, placed elsewhere or "
                "does not fit here): nothing to do",
                job_id,
            )
            return "skipped"
        bind(attempt=attempt)  # the task set job_id; lines from here on carry both
        log.info("job %s attempt %d: starting trainer", job_id, attempt)
        try:
            return self._supervise(job_id, attempt, float(max_runtime), gpus)
        except Exception as exc:  # the supervisor itself failed: record it, never lose the job
            log.exception("supervising job %s failed", job_id)
            if is_connection_error(exc):
                return self._retry(job_id, attempt, f"database connection lost: {exc}")
            self._finish(job_id, attempt, JobStatus.FAILED, "internal_error", repr(exc))
            return "failed"

    def _supervise(
        self, job_id: uuid.UUID, attempt: int, max_runtime: float, gpus: list[int]
    ) -> str:
        job_dir = self.store.job_dir(job_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        result = job_dir / f".attempt-{attempt}.result.json"
        result.unlink(missing_ok=True)
        with (job_dir / f"trainer-attempt-{attempt}.log").open("ab") as logfile:
            proc = subprocess.Popen(
                [
                    *trainer_launcher(len(gpus)),
                    "workers.trainer",
                    str(job_id),
                    str(attempt),
                    self.owner,
                    str(result),
                ],
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: signals never reach the worker
                env=trainer_environment(gpus),
            )
            try:
                watch = self._watch(proc, job_id, attempt, max_runtime)
            finally:  # whatever happens to the supervisor, no trainer outlives it
                if proc.poll() is None:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait()
        return self._record(job_id, attempt, proc.returncode, result, watch)

    def _beat(self, job_id: uuid.UUID, attempt: int) -> bool | None:
        with transaction(self.factory) as session:
            return renew_lease(session, job_id, attempt, self.owner, self.settings.lease_seconds)

    def _watch(
        self, proc: subprocess.Popen[bytes], job_id: uuid.UUID, attempt: int, max_runtime: float
    ) -> _Watch:
        watch = _Watch()
        started = last_beat = last_renewed = time.monotonic()
        grace = self.settings.cancel_grace_seconds
        # Beat often enough to see a cancel quickly; the lease is renewed on every beat.
        every = min(self.settings.heartbeat_seconds, self.settings.cancel_poll_seconds)
        while proc.poll() is None:
            now = time.monotonic()
            if now - last_beat >= every:
                last_beat = now
                try:
                    cancel = self._beat(job_id, attempt)
                except Exception as exc:
                    if not is_connection_error(exc):
                        raise
                    cancel = False
                    # Keep training through a short outage, but never past our own lease.
                    if now - last_renewed > self.settings.lease_seconds:
                        cancel = None
                    else:
                        log.warning("job %s: heartbeat failed (%s); retrying", job_id, exc)
                else:
                    if cancel is not None:
                        last_renewed = now
                if cancel is None:
                    watch.lease_lost = True
                    _signal_group(proc, signal.SIGKILL)
                    break
                if cancel and watch.cancel_sent_at is None:
                    log.info("job %s: cancel requested, stopping the trainer", job_id)
                    watch.cancel_sent_at = now
                    _signal_group(proc, signal.SIGTERM)
            if watch.cancel_sent_at is None and now - started > max_runtime:
                watch.timed_out = True
                watch.cancel_sent_at = now
                _signal_group(proc, signal.SIGTERM)
            if watch.cancel_sent_at is not None and now - watch.cancel_sent_at > grace:
                _signal_group(proc, signal.SIGKILL)
            time.sleep(POLL_SECONDS)
        proc.wait()
        return watch

    def _record(
        self, job_id: uuid.UUID, attempt: int, returncode: int, result_file: Path, watch: _Watch
    ) -> str:
        outcome = Outcome.read(result_file)
        if watch.lease_lost or returncode == LEASE_LOST_EXIT:
            log.warning(
                "job %s attempt %d lost its lease; another attempt owns it", job_id, attempt
            )
            return "lease_lost"
        if watch.timed_out:
            limit = "the job ran past resources.max_runtime_s"
            return self._finish(job_id, attempt, JobStatus.FAILED, FailureReason.TIMEOUT, limit)
        if watch.cancel_sent_at is not None:
            return self._finish(job_id, attempt, JobStatus.CANCELLED, None, "cancelled by request")
        if outcome is None:
            message = f"the trainer exited with code {returncode} and no result"
            return self._finish(
                job_id, attempt, JobStatus.FAILED, FailureReason.INTERNAL_ERROR, message
            )
        if outcome.status == "completed":
            return self._finish(job_id, attempt, JobStatus.SUCCEEDED, None, None)
        if outcome.status == "stopped":
            return self._finish(job_id, attempt, JobStatus.CANCELLED, None, "cancelled by request")
        if outcome.reason in RETRYABLE:
            return self._retry(job_id, attempt, outcome.message or str(outcome.reason))
        return self._finish(job_id, attempt, JobStatus.FAILED, outcome.reason, outcome.message)

    def _retry(self, job_id: uuid.UUID, attempt: int, message: str) -> str:
        """An infrastructure failure: requeue (the dispatcher resends it) or fail if spent."""

        def write(session: Session) -> JobStatus | None:
            return retry_or_fail(
                session, job_id, attempt, self.owner, FailureReason.INFRASTRUCTURE, message
            )

        status = self._with_retries(write)
        log.warning("job %s attempt %d: %s -> %s", job_id, attempt, message, status)
        return str(status or "lease_lost")

    def _finish(
        self,
        job_id: uuid.UUID,
        attempt: int,
        status: JobStatus,
        reason: str | None,
        message: str | None,
    ) -> str:
        def write(session: Session) -> bool:
            return finish_job(
                session, job_id, attempt, self.owner, status, reason=reason, message=message
            )

        self._with_retries(write)
        log.info("job %s attempt %d: %s %s", job_id, attempt, status, reason or "")
        return str(status)

    def _with_retries(self, write: Callable[[Session], T]) -> T:
        """Run `write` in a transaction, retrying through a database outage (bounded)."""
        deadline = time.monotonic() + self.settings.db_retry_seconds
        delay = 0.5
        while True:
            try:
                with transaction(self.factory) as session:
                    return write(session)
            except Exception as exc:
                if not is_connection_error(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning("database unreachable (%s); retrying in %.1f s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)


def trainer_launcher(gpus: int) -> list[str]:
    """`python -m`, or torchrun with one process per GPU for a multi-GPU job (DDP on one node)."""
    if gpus <= 1:
        return [sys.executable, "-m"]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={gpus}",
        "-m",
    ]


def trainer_environment(gpus: list[int]) -> dict[str, str]:
    """The worker's environment, the trainer seeing exactly the job's GPUs (none: a CPU job)."""
    return {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus)}


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
