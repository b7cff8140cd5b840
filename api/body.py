"""Reading a spec body: JSON or YAML, size-limited, with the parser's message on error."""

from __future__ import annotations

import json
from typing import Any

import yaml
from fastapi import HTTPException, Request, status

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


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


async def read_document(request: Request, limit: int) -> Any:
    return parse_document(
        await read_limited(request, limit), request.headers.get("content-type", "")
    )
