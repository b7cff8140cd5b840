"""The app factory: `uvicorn --factory api.main:create_app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.body import BodyLimit
from api.errors import install_error_handlers
from api.routes import cluster, components, datasets, events, health, jobs, sweeps
from api.routes.dashboard import install_dashboard
from api.routes.observability import RequestLatency
from api.routes.observability import router as observability_router
from service.db import make_engine, make_session_factory
from service.logging import configure_logging
from service.observability import api_metrics
from service.queue import CeleryJobQueue, JobQueue
from service.settings import Settings
from service.storage import ArtifactStore


def create_app(settings: Settings | None = None, queue: JobQueue | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings)
    engine = make_engine(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(
        title="Regimen",
        version="0.1.0",
        summary="Training as a service for optimization and regularization research",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.session_factory = make_session_factory(engine)
    app.state.queue = queue or CeleryJobQueue(settings)
    app.state.store = ArtifactStore(settings.resolved_artifact_dir)
    app.state.metrics = api_metrics(app.state.session_factory, settings.lease_seconds)
    app.add_middleware(
        BodyLimit, limit=settings.max_body_bytes, own_limit=frozenset({datasets.UPLOAD_PATH})
    )
    app.add_middleware(RequestLatency, histogram=app.state.metrics.request_latency)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(components.router)
    app.include_router(cluster.router)
    app.include_router(events.router)
    app.include_router(sweeps.router)
    app.include_router(datasets.router)
    app.include_router(observability_router)
    install_dashboard(app)
    return app
