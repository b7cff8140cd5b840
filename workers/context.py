"""What one worker process holds for its lifetime: settings, engine, supervisor, maintenance."""

from __future__ import annotations

import functools
import os
import socket
import uuid
from dataclasses import dataclass

from service.db import SessionFactory, make_engine, make_session_factory
from service.queue import CeleryJobQueue
from service.scheduler import worker_queue
from service.settings import Settings
from service.storage import ArtifactStore
from workers.maintenance import Maintenance
from workers.registration import Presence
from workers.supervisor import Supervisor


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    factory: SessionFactory
    supervisor: Supervisor
    presence: Presence
    maintenance: Maintenance

    @property
    def queue(self) -> str:
        """This worker's own Celery queue: the scheduler sends it the jobs placed on it."""
        return worker_queue(self.settings.task_queue, self.supervisor.owner)


@functools.cache
def worker_context() -> WorkerContext:
    settings = Settings()
    # A random suffix: a restarted container may reuse the host name and pid of a dead worker.
    owner = settings.worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    factory = make_session_factory(make_engine(settings))
    store = ArtifactStore(settings.resolved_artifact_dir)
    return WorkerContext(
        settings,
        factory,
        Supervisor(settings, factory, store, owner),
        Presence(settings, factory, owner),
        Maintenance(settings, factory, CeleryJobQueue(settings)),
    )
