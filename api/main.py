"""The app factory: `uvicorn --factory api.main:create_app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.routes import components, health, jobs
from service.db import make_engine, make_session_factory
from service.queue import CeleryJobQueue, JobQueue
from service.settings import Settings
from service.storage import ArtifactStore


def create_app(settings: Settings | None = None, queue: JobQueue | None = None) -> FastAPI:
    settings = settings or Settings()
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
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(components.router)
    return app
