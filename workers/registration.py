"""A worker's presence in the `workers` table: registered at start, beating while alive.

The dispatcher places jobs only on live workers (seen within worker_ttl_seconds) of its pool,
on the GPUs they declare (REGIMEN_WORKER_GPUS); a worker that stops cleanly steps out at once.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from models import Worker
from models.base import utcnow
from service.db import SessionFactory, transaction
from service.scheduler import beat, register_worker
from service.settings import Settings

log = logging.getLogger("regimen.worker")


class Presence:
    def __init__(self, settings: Settings, factory: SessionFactory, worker_id: str) -> None:
        self.settings = settings
        self.factory = factory
        self.worker_id = worker_id
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="regimen-presence", daemon=True)

    def register(self) -> None:
        settings = self.settings
        with transaction(self.factory) as session:
            register_worker(
                session,
                self.worker_id,
                host=settings.resolved_worker_host,
                gpus=settings.gpu_indices,
                slots=settings.worker_slots,
                pool=settings.task_queue,
                now=utcnow(),
            )
        log.info(
            "worker %s registered: GPUs %s, pool %s",
            self.worker_id,
            settings.gpu_indices or "none",
            settings.task_queue,
        )

    def start(self) -> None:
        self.register()
        self._thread.start()

    def stop(self) -> None:
        """Step out: no job is placed here any more (what runs keeps its lease)."""
        self.stopped.set()
        try:
            with transaction(self.factory) as session:
                worker = session.get(Worker, self.worker_id)
                if worker is not None:
                    worker.last_seen_at = utcnow() - timedelta(days=1)
        except Exception:  # shutting down while the database is away: the TTL does it
            log.warning("worker %s: could not step out; it expires by its TTL", self.worker_id)

    def _loop(self) -> None:
        every = max(1.0, self.settings.worker_ttl_seconds / 3)
        while not self.stopped.wait(every):
            try:
                with transaction(self.factory) as session:
                    alive = beat(session, self.worker_id, utcnow())
                if not alive:
                    self.register()
            except Exception:  # the database is away: keep trying, the TTL covers the gap
                log.warning("worker %s: heartbeat failed", self.worker_id, exc_info=True)
