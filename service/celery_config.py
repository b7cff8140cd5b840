"""Celery configuration built from Settings, shared by the worker and the API's publisher."""

from __future__ import annotations

from typing import Any

from service.settings import Settings

RUN_JOB_TASK = "regimen.run_job"


def celery_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "result_backend": None,
        "task_ignore_result": True,
        # A job's message is acknowledged only when its task ends; the database claim makes
        # a redelivered message harmless, and prefetch 1 keeps queued jobs for idle workers.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": settings.task_queue,
        "task_routes": {RUN_JOB_TASK: {"queue": settings.task_queue}},
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "accept_content": ["json"],
        "task_serializer": "json",
    }
    if settings.broker_url.startswith("filesystem://"):
        folder = settings.broker_dir
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        config["broker_transport_options"] = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            # Broadcast (pidbox) files go under var/ too, never into the working directory.
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }
    elif settings.broker_url.startswith("redis"):
        # Long jobs: redelivery only after a day; leases (not the broker) detect dead workers.
        config["broker_transport_options"] = {
            "visibility_timeout": 24 * 3600,
            "socket_connect_timeout": 3,
            "socket_timeout": 5,
        }
    return config
