"""The trainer's sink in a worker: metrics, progress and checkpoints go to the database.

Every write is fenced by attempt (a stale attempt gets LeaseLost and stops). A database outage does
not kill the run: metrics, progress and checkpoint registrations stay buffered in memory and are
written, in one transaction, at the next progress report after a backoff; `close` retries until
the buffer is written or `db_retry_seconds` pass (then DatabaseUnavailable: an infrastructure
failure the service retries from the last registered checkpoint).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.orm import Session

from service.checkpoints import is_state_file, publish_weights, register_checkpoint
from service.db import SessionFactory, transaction
from service.jobs import add_event, lock_attempt
from service.metrics import write_metrics
from service.outages import is_connection_error
from service.storage import ArtifactStore
from trainlib.sink import Metric

log = logging.getLogger("regimen.sink")
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0


class LeaseLost(RuntimeError):
    """This attempt is no longer the job's current one: stop writing at once."""


class DatabaseUnavailable(RuntimeError):
    """The database stayed unreachable longer than the retry budget."""


class DatabaseSink:
    def __init__(
        self,
        factory: SessionFactory,
        job_id: uuid.UUID,
        attempt: int,
        owner: str,
        *,
        store: ArtifactStore | None = None,
        keep_checkpoints: int = 3,
        retry_seconds: float = 120.0,
    ) -> None:
        self.factory = factory
        self.job_id = job_id
        self.attempt = attempt
        self.owner = owner
        self.store = store
        self.keep_checkpoints = keep_checkpoints
        self.retry_seconds = retry_seconds
        self.stop_requested = threading.Event()
        self._pending: list[Metric] = []
        self._latest: dict[str, float] = {}
        self._progress: tuple[int, int] | None = None
        self._files: list[tuple[int, Path]] = []
        self._backoff = 0.0
        self._next_try = 0.0
        self.failed_writes = 0

    @property
    def buffered(self) -> int:
        return len(self._pending) + len(self._files)

    def on_metrics(self, points: Sequence[Metric]) -> None:
        self._pending.extend(points)

    def on_progress(self, step: int, total: int) -> None:
        self._progress = (step, total)
        self._try_flush()

    def on_checkpoint(self, step: int, path: Path) -> None:
        self._files.append((step, path))
        self._try_flush()

    def should_stop(self) -> bool:
        return self.stop_requested.is_set()

    def close(self, extra_files: Sequence[Path] = ()) -> None:
        """Write everything buffered (and publish `extra_files`), retrying with backoff."""
        self._files.extend((-1, p) for p in extra_files)
        deadline = time.monotonic() + self.retry_seconds
        while True:
            self._next_try = 0.0
            if self._try_flush():
                return
            if time.monotonic() + self._backoff > deadline:
                raise DatabaseUnavailable(
                    f"the database stayed unreachable for {self.retry_seconds:g} s; "
                    f"{self.buffered} buffered writes of attempt {self.attempt} not saved"
                )
            time.sleep(self._backoff)

    def _try_flush(self) -> bool:
        """Write the buffer now unless backing off; True when nothing is left buffered."""
        if time.monotonic() < self._next_try:
            return False
        try:
            self._write()
        except LeaseLost:
            raise
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            self.failed_writes += 1
            self._backoff = min(max(self._backoff * 2, BACKOFF_START_S), BACKOFF_MAX_S)
            self._next_try = time.monotonic() + self._backoff
            log.warning(
                "database unreachable (%s); %d writes buffered, retrying in %.1f s",
                type(exc).__name__,
                self.buffered,
                self._backoff,
            )
            return False
        self._backoff = 0.0
        return True

    def _write(self) -> None:
        latest = {**self._latest, **{m.name: m.value for m in self._pending}}
        with transaction(self.factory) as session:
            job = lock_attempt(session, self.job_id, self.attempt, self.owner)
            if job is None:
                raise LeaseLost(f"attempt {self.attempt} of job {self.job_id} is stale")
            if self._progress is not None:
                job.progress_step, job.total_steps = self._progress
                job.latest_metrics = {**job.latest_metrics, **latest}
            write_metrics(session, self.job_id, self._pending)
            for step, path in self._files:
                self._publish(session, step, path, latest)
        # Committed: a published state file lives on as the job folder's link, so the attempt's
        # own copy goes (the trainer does not prune; the database decides what is kept).
        for _, path in self._files:
            if is_state_file(path.name):
                path.unlink(missing_ok=True)
        self._latest = latest
        self._pending.clear()
        self._files.clear()

    def _publish(self, session: Session, step: int, path: Path, latest: dict[str, float]) -> None:
        if self.store is None or not path.is_file():
            if self.store is not None:
                log.warning("checkpoint %s is gone before it was published", path)
            return
        if is_state_file(path.name) and step >= 0:
            register_checkpoint(
                session,
                self.store,
                job_id=self.job_id,
                attempt=self.attempt,
                owner=self.owner,
                step=step,
                src=path,
                metrics=latest,
                keep=self.keep_checkpoints,
            )
            add_event(session, self.job_id, self.attempt, "checkpoint", step=step, name=path.name)
        else:
            publish_weights(session, self.store, self.job_id, self.attempt, self.owner, path)
