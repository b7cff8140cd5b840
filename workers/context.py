"""What one worker process holds for its lifetime: settings, engine, supervisor, maintenance."""

from __future__ import annotations

import functools
import os
import socket
import uuid
from dataclasses import dataclass

from service.db import SessionFactory, make_engine, make_session_factory
from service.settings import Settings
from service.storage import ArtifactStore
from workers.supervisor import Supervisor


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    factory: SessionFactory
    supervisor: Supervisor


@functools.cache
def worker_context() -> WorkerContext:
    settings = Settings()
    # A random suffix: a restarted container may reuse the host name and pid of a dead worker.
    owner = settings.worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    factory = make_session_factory(make_engine(settings))
    store = ArtifactStore(settings.resolved_artifact_dir)
    return WorkerContext(settings, factory, Supervisor(settings, factory, store, owner))
