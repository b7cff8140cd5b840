"""Celery tasks stay thin: the supervisor does the work. The worker starts its maintenance."""

from __future__ import annotations

import uuid
from typing import Any

from celery.signals import worker_ready

from service.celery_config import RUN_JOB_TASK
from service.logging import log_context
from workers.celery_app import app
from workers.context import worker_context
from workers.maintenance import start_maintenance


@app.task(name=RUN_JOB_TASK, ignore_result=True)
def run_job(job_id: str) -> str:
    """Claim and run one job; a message for a claimed or finished job does nothing."""
    with log_context(job_id=job_id):
        return worker_context().supervisor.run(uuid.UUID(job_id))


@worker_ready.connect
def _on_worker_ready(**_kwargs: Any) -> None:
    """Reap expired leases and dispatch waiting jobs now, then every maintenance_seconds."""
    context = worker_context()
    start_maintenance(context.settings, context.factory)
