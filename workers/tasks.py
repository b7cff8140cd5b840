"""Celery tasks stay thin: the supervisor does the work. The worker starts its maintenance."""

from __future__ import annotations

import uuid
from typing import Any

from celery.signals import celeryd_after_setup, worker_ready, worker_shutdown

from service.celery_config import RUN_JOB_TASK
from service.logging import log_context
from workers.celery_app import app
from workers.context import worker_context


@app.task(name=RUN_JOB_TASK, ignore_result=True)
def run_job(job_id: str) -> str:
    """Claim and run one job; a message for a claimed or finished job does nothing. Then a
    scheduling pass: the place this job held goes to the next waiting one at once."""
    context = worker_context()
    with log_context(job_id=job_id):
        outcome = context.supervisor.run(uuid.UUID(job_id))
    if outcome != "skipped":
        context.maintenance.dispatch_now()
    return outcome


@celeryd_after_setup.connect
def _own_queue(instance: Any, **_kwargs: Any) -> None:
    """Besides its pool's shared queue, the worker consumes its own: the jobs placed on it."""
    instance.app.amqp.queues.select_add(worker_context().queue)


@worker_ready.connect
def _on_worker_ready(**_kwargs: Any) -> None:
    """Reap expired leases and dispatch waiting jobs now, then every maintenance_seconds."""
    context = worker_context()
    context.presence.start()  # registered (GPUs, node, pool) before the first scheduling pass
    context.maintenance.start()


@worker_shutdown.connect
def _on_worker_shutdown(**_kwargs: Any) -> None:
    """Step out of the cluster: nothing more is placed here."""
    context = worker_context()
    context.maintenance.stop()
    context.presence.stop()
