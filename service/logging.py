"""Structured logs: one JSON object per line (time, level, logger, message, job_id, attempt).

The API, the Celery worker and the trainer subprocess all call `configure_logging` once at start.
The job id and attempt come from a context variable (`log_context` / `bind`), so every line a
task or trainer writes while working on a job carries them without passing them around.
`REGIMEN_LOG_FORMAT=text` switches to plain lines for humans.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

from service.settings import Settings

# The fields a log line may carry about the job it concerns, in output order.
CONTEXT_FIELDS = ("job_id", "attempt")
# Loggers that configure their own handlers (uvicorn): routed to the root handler instead.
_OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

_context: ContextVar[Mapping[str, object]] = ContextVar(
    "regimen_log_context", default=MappingProxyType({})
)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add fields (job_id=..., attempt=...) to every log line written inside the block."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: object) -> None:
    """Add fields for the rest of the current context (undone when an enclosing block ends)."""
    _context.set({**_context.get(), **fields})


class ContextFilter(logging.Filter):
    """Copies the context's fields onto each record; explicit `extra=` values win."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def _context_of(record: logging.LogRecord) -> dict[str, Any]:
    found = {k: getattr(record, k) for k in CONTEXT_FIELDS if getattr(record, k, None) is not None}
    return {k: v if isinstance(v, int | float | bool) else str(v) for k, v in found.items()}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; exceptions go in an `exception` field, never a second line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_context_of(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [job=... attempt=...] message` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = _context_of(record)
        record.context = (
            " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]" if fields else ""
        )
        return super().format(record)


class _RegimenHandler(logging.StreamHandler[TextIO]):
    """Our root handler, recognisable so that configuring twice replaces it."""


def configure_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Install the one root handler (JSON or text, per settings); returns it."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _RegimenHandler)]:
        root.removeHandler(old)
    handler = _RegimenHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in _OWN_HANDLERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler
