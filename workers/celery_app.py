"""The Celery app, built from Settings: `celery -A workers.celery_app worker --pool=solo`."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import setup_logging

from service.celery_config import celery_config
from service.logging import configure_logging
from service.settings import Settings


def create_celery_app(settings: Settings | None = None) -> Celery:
    celery = Celery("regimen", include=["workers.tasks"])
    celery.conf.update(celery_config(settings or Settings()))
    return celery


@setup_logging.connect
def _structured_logs(**_kwargs: Any) -> None:
    """With a receiver here Celery leaves logging alone: our JSON (or text) lines instead."""
    configure_logging(Settings())


app = create_celery_app()
