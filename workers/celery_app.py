"""The Celery app, built from Settings: `celery -A workers.celery_app worker --pool=solo`."""

from __future__ import annotations

from celery import Celery

from service.celery_config import celery_config
from service.settings import Settings


def create_celery_app(settings: Settings | None = None) -> Celery:
    celery = Celery("regimen", include=["workers.tasks"])
    celery.conf.update(celery_config(settings or Settings()))
    return celery


app = create_celery_app()
