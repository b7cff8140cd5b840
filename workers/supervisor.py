"""The job supervisor: claim, spawn the trainer, heartbeat the lease, relay cancel, record.

Never `revoke(terminate=True)`: a cancel is a flag in the database that the heartbeat sees; the
trainer gets SIGTERM (checkpoint and stop at the next step), then SIGKILL after a grace period.
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
from dataclasses import dataclass
from pathlib import Path

from models import Job
from service.db import SessionFactory, transaction
from service.jobs import claim_job, finish_job, renew_lease
from service.logging import bind
from service.settings import Settings
from service.states import FailureReason, JobStatus
from service.storage import ArtifactStore
from workers.outcome import LEASE_LOST_EXIT, Outcome

log = logging.getLogger("regimen.supervisor")
POLL_SECONDS = 0.2


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
        with transaction(self.factory) as session:
            attempt = claim_job(session, job_id, self.owner, self.settings.lease_seconds)
            job = session.get(Job, job_id) if attempt is not None else None
            max_runtime = job.resolved_spec["resources"]["max_runtime_s"] if job else 0
        if attempt is None:
            log.info("job %s is not queued (claimed, finished or unknown): nothing to do", job_id)
            return "skipped"
        bind(attempt=attempt)  # the task set job_id; lines from here on carry both
        log.info("job %s attempt %d: starting trainer", job_id, attempt)
        try:
            return self._supervise(job_id, attempt, float(max_runtime))
        except Exception as exc:  # the supervisor itself failed: record it, never lose the job
            log.exception("supervising job %s failed", job_id)
            self._finish(job_id, attempt, JobStatus.FAILED, "internal_error", repr(exc))
            return "failed"

    def _supervise(self, job_id: uuid.UUID, attempt: int, max_runtime: float) -> str:
        job_dir = self.store.job_dir(job_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        result = job_dir / f".attempt-{attempt}.result.json"
        result.unlink(missing_ok=True)
        with (job_dir / f"trainer-attempt-{attempt}.log").open("ab") as logfile:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "workers.trainer",
                    str(job_id),
                    str(attempt),
                    self.owner,
                    str(result),
                ],
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: signals never reach the worker
                env=os.environ.copy(),
            )
            watch = self._watch(proc, job_id, attempt, max_runtime)
        return self._record(job_id, attempt, proc.returncode, result, watch)

    def _watch(
        self, proc: subprocess.Popen[bytes], job_id: uuid.UUID, attempt: int, max_runtime: float
    ) -> _Watch:
        watch = _Watch()
        started = last_beat = time.monotonic()
        grace = self.settings.cancel_grace_seconds
        while proc.poll() is None:
            now = time.monotonic()
            if now - last_beat >= self.settings.heartbeat_seconds:
                last_beat = now
                with transaction(self.factory) as session:
                    cancel = renew_lease(
                        session, job_id, attempt, self.owner, self.settings.lease_seconds
                    )
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
        return self._finish(job_id, attempt, JobStatus.FAILED, outcome.reason, outcome.message)

    def _finish(
        self,
        job_id: uuid.UUID,
        attempt: int,
        status: JobStatus,
        reason: str | None,
        message: str | None,
    ) -> str:
        with transaction(self.factory) as session:
            finish_job(session, job_id, attempt, self.owner, status, reason=reason, message=message)
        log.info("job %s attempt %d: %s %s", job_id, attempt, status, reason or "")
        return str(status)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
