"""Telling a database outage (retry, answer 503) from a bug in a statement."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, OperationalError


def is_connection_error(exc: BaseException) -> bool:
    """A lost or refused database connection (retryable), not a bug in a statement."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
