"""Celery tasks stay thin: the supervisor does the work."""

from __future__ import annotations

import uuid

from service.celery_config import RUN_JOB_TASK
from service.logging import log_context
from workers.celery_app import app
from workers.context import worker_context


@app.task(name=RUN_JOB_TASK, ignore_result=True)
def run_job(job_id: str) -> str:
    """Claim and run one job; a message for a claimed or finished job does nothing."""
    with log_context(job_id=job_id):
        return worker_context().supervisor.run(uuid.UUID(job_id))
