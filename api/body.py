"""Request bodies: size-limited for every route; a spec read as JSON or YAML, with the parser's
message on error."""

from __future__ import annotations

import json
from typing import Any

import yaml
from fastapi import HTTPException, Request, status
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


class BodyLimit:
    """Every request body is limited before any route reads it: specs, sweeps, forks, keys.

    A declared Content-Length over the limit is refused at once; a chunked body is counted as it
    arrives and refused as soon as it passes. Paths in `own_limit` (the upload route, which
    streams to a file under its own larger limit) are let through.
    """

    def __init__(self, app: ASGIApp, limit: int, own_limit: frozenset[str]) -> None:
        self.app, self.limit, self.own_limit = app, limit, own_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.own_limit:
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            too_large = _too_large(self.limit)
            await JSONResponse({"detail": too_large.detail}, too_large.status_code)(
                scope, receive, send
            )
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _too_large(self.limit)  # FastAPI answers it as it reads the body
            return message

        await self.app(scope, counted, send)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"request body is larger than the limit of {limit} bytes (REGIMEN_MAX_BODY_BYTES)",
    )


def parse_document(body: bytes, content_type: str) -> Any:
    """JSON by default; YAML when the content type says so."""
    media = content_type.split(";")[0].strip().lower()
    if not body.strip():
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "empty body: send a job spec")
    if media in YAML_TYPES:
        try:
            return yaml.safe_load(body)
        except yaml.YAMLError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"malformed YAML: {exc}") from None
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"malformed JSON: {exc} (send YAML with Content-Type: application/yaml)",
        ) from None


async def read_document(request: Request) -> Any:
    return parse_document(await request.body(), request.headers.get("content-type", ""))
