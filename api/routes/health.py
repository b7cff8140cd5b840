"""Liveness and readiness (database and broker)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy import text

from api.deps import QueueDep, SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(response: Response, session: SessionDep, queue: QueueDep) -> dict[str, str]:
    checks = {"database": "ok", "broker": "ok"}
    try:
        session.execute(text("SELECT 1"))
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    if not queue.ping():
        checks["broker"] = "unavailable"
    if any(v != "ok" for v in checks.values()):
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return checks
