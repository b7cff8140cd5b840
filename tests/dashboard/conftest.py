"""The live service (uvicorn + a Celery worker on PostgreSQL and Redis) from tests/e2e."""

from tests.e2e.conftest import live_service

__all__ = ["live_service"]
