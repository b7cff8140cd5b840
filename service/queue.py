"""Publishing job ids to the broker, by task name (the API never imports workers/)."""

from __future__ import annotations

import logging
import uuid
from typing import Protocol

from celery import Celery

from service.celery_config import RUN_JOB_TASK, celery_config
from service.settings import Settings

log = logging.getLogger(__name__)


class JobQueue(Protocol):
    def enqueue(self, job_id: uuid.UUID, queue: str | None = None) -> bool: ...

    def ping(self) -> bool: ...


class CeleryJobQueue:
    def __init__(self, settings: Settings) -> None:
        self._app = Celery("regimen-publisher")
        self._app.conf.update(celery_config(settings))
        self._queue = settings.task_queue

    def enqueue(self, job_id: uuid.UUID, queue: str | None = None) -> bool:
        """Send the job id to a worker's own queue (placed) or the pool's shared queue; False
        (logged) if the broker is unreachable: the job stays queued."""
        try:
            self._app.send_task(RUN_JOB_TASK, args=[str(job_id)], queue=queue or self._queue)
        except Exception:  # any broker failure: the database still has the job
            log.exception("could not enqueue job %s; it stays queued", job_id)
            return False
        return True

    def ping(self) -> bool:
        try:
            with self._app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
        except Exception:
            return False
        return True
