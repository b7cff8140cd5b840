"""Domain errors to HTTP: each response names what is wrong and how to fix it."""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service.jobs import IdempotencyConflict, JobNotFound
from service.outages import is_connection_error
from service.scheduler import NoWorkerFits, PriorityNotAllowed, QuotaExceeded
from service.states import IllegalTransition
from trainlib.spec import SpecError


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SpecError)
    async def spec_error(_request: Request, exc: SpecError) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc), "errors": exc.errors},
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )

    @app.exception_handler(JobNotFound)
    async def not_found(_request: Request, exc: JobNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_404_NOT_FOUND)

    @app.exception_handler(IdempotencyConflict)
    async def idempotency(_request: Request, exc: IdempotencyConflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_409_CONFLICT)

    @app.exception_handler(IllegalTransition)
    async def illegal(_request: Request, exc: IllegalTransition) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_409_CONFLICT)

    @app.exception_handler(QuotaExceeded)
    async def over_quota(_request: Request, exc: QuotaExceeded) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_429_TOO_MANY_REQUESTS)

    @app.exception_handler(PriorityNotAllowed)
    async def priority(_request: Request, exc: PriorityNotAllowed) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_403_FORBIDDEN)

    @app.exception_handler(NoWorkerFits)
    async def too_big(_request: Request, exc: NoWorkerFits) -> JSONResponse:
        path = ["resources", "gpus"]
        return JSONResponse(
            {"detail": str(exc), "errors": [{"path": path, "message": str(exc)}]},
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )

    @app.exception_handler(PoolTimeout)
    async def database_busy(_request: Request, exc: PoolTimeout) -> JSONResponse:
        # Every pooled connection stayed busy (a burst of requests): the same answer as an
        # outage, so a client retries later with its Idempotency-Key.
        return JSONResponse(
            {"detail": "the database is busy; retry shortly"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(DBAPIError)
    async def database_down(_request: Request, exc: DBAPIError) -> JSONResponse:
        # A lost or refused connection (any route, the API key check included) is a 503 with
        # Retry-After, never a 500; other database errors are bugs and stay 500s.
        if not is_connection_error(exc):
            return JSONResponse(
                {"detail": "internal error"}, status_code=status.HTTP_500_INTERNAL_SERVER_ERROR
            )
        return JSONResponse(
            {"detail": "the database is unavailable; retry shortly"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
