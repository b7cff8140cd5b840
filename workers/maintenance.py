"""The reaper and the dispatcher, run by every worker: once at start, then periodically.

A thread in the worker process rather than Celery beat: nothing extra to deploy (the embedded
default keeps one worker and the API), and several workers running it at once is safe because
each change is a conditional UPDATE in the database.
"""

from __future__ import annotations

import logging
import threading

from service.db import SessionFactory
from service.dispatch import maintenance_tick, place_and_send
from service.queue import JobQueue
from service.settings import Settings

log = logging.getLogger("regimen.maintenance")


class Maintenance:
    def __init__(self, settings: Settings, factory: SessionFactory, queue: JobQueue) -> None:
        self.settings = settings
        self.factory = factory
        self.queue = queue
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="regimen-maintenance", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def tick(self) -> None:
        try:
            tick = maintenance_tick(self.factory, self.queue, self.settings)
        except Exception:  # the database or broker is down: try again next period
            log.exception("maintenance tick failed")
            return
        if tick.sent or tick.unsent:
            log.info("dispatched %d queued jobs (%d unsent)", len(tick.sent), len(tick.unsent))

    def dispatch_now(self) -> None:
        """A scheduling pass now (a job just ended here: its place goes to the next one)."""
        try:
            place_and_send(self.factory, self.queue, self.settings)
        except Exception:  # the next periodic tick does it
            log.exception("scheduling pass failed")

    def _loop(self) -> None:
        while not self.stopped.is_set():
            self.tick()
            self.stopped.wait(self.settings.maintenance_seconds)
