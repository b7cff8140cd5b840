"""The trainer's sink in a worker: metrics and progress go to the database, fenced by attempt."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

from service.db import SessionFactory, transaction
from service.jobs import add_event, record_progress
from service.metrics import write_metrics
from trainlib.sink import Metric


class LeaseLost(RuntimeError):
    """This attempt is no longer the job's current one: stop writing at once."""


class DatabaseSink:
    def __init__(
        self, factory: SessionFactory, job_id: uuid.UUID, attempt: int, owner: str
    ) -> None:
        self.factory = factory
        self.job_id = job_id
        self.attempt = attempt
        self.owner = owner
        self.stop_requested = threading.Event()
        self._pending: list[Metric] = []

    def on_metrics(self, points: Sequence[Metric]) -> None:
        self._pending.extend(points)

    def on_progress(self, step: int, total: int) -> None:
        """Flush the pending batch and the progress in one transaction."""
        latest = {m.name: m.value for m in self._pending}
        with transaction(self.factory) as session:
            if not record_progress(
                session, self.job_id, self.attempt, self.owner, step, total, latest
            ):
                raise LeaseLost(f"attempt {self.attempt} of job {self.job_id} is stale")
            write_metrics(session, self.job_id, self._pending)
        self._pending.clear()

    def on_checkpoint(self, step: int, path: Path) -> None:
        with transaction(self.factory) as session:
            add_event(session, self.job_id, self.attempt, "checkpoint", step=step, name=path.name)

    def should_stop(self) -> bool:
        return self.stop_requested.is_set()
