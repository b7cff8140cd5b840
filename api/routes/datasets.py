"""/v1/datasets: upload a data set file (the raw body, up to a size limit) and list the team's.

`POST /v1/datasets?name=train.npz` with the file's bytes as the body (any content type); the
format comes from the name's extension, or from `format=npz|csv|parquet`. The body is streamed to a
temporary file and refused with 413 as soon as it passes REGIMEN_MAX_UPLOAD_BYTES.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from api.deps import SessionDep, SettingsDep, StoreDep, TeamDep
from models import Dataset
from service import datasets as dataset_service
from trainlib.components.datasets_upload import UploadError, check_format

UPLOAD_PATH = "/v1/datasets"  # streams to a file under its own limit, not REGIMEN_MAX_BODY_BYTES
router = APIRouter(prefix=UPLOAD_PATH, tags=["datasets"])


class DatasetOut(BaseModel):
    id: uuid.UUID
    name: str
    format: str
    size_bytes: int
    content_hash: str
    info: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: Dataset) -> DatasetOut:
        return cls(
            id=row.id,
            name=row.name,
            format=row.format,
            size_bytes=row.size_bytes,
            content_hash=row.content_hash,
            info=row.info,
            created_at=row.created_at,
        )


def _format_of(name: str, given: str | None) -> str:
    suffix = name.rpartition(".")[2] if "." in name else ""
    if not (given or suffix):
        raise UploadError("name the file with its extension (name=train.npz) or pass format=")
    return check_format(given or suffix)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetOut)
async def upload_dataset(
    request: Request,
    response: Response,
    team: TeamDep,
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    name: Annotated[str, Query(min_length=1, max_length=200, description="e.g. train.npz")],
    format: Annotated[
        str | None, Query(description="npz, csv or parquet; default: the extension")
    ] = None,
) -> DatasetOut:
    limit = settings.max_upload_bytes
    try:
        fmt = _format_of(name, format)
    except UploadError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    try:
        incoming = await dataset_service.receive(request.stream(), store, limit)
    except dataset_service.UploadTooLarge:
        raise _too_large(limit) from None
    if incoming.size_bytes == 0:
        incoming.path.unlink(missing_ok=True)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "empty body: send the file's bytes")
    try:
        row, created = await run_in_threadpool(
            dataset_service.register,
            session,
            store,
            team_id=team.id,
            name=name,
            fmt=fmt,
            incoming=incoming,
            max_unpacked_bytes=8 * limit,
        )
    except UploadError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    session.commit()
    if not created:
        response.status_code = status.HTTP_200_OK  # the team uploaded these bytes before
    return DatasetOut.of(row)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"the file is larger than the limit of {limit} bytes (REGIMEN_MAX_UPLOAD_BYTES)",
    )


@router.get("", response_model=list[DatasetOut])
def list_datasets(team: TeamDep, session: SessionDep) -> list[DatasetOut]:
    return [DatasetOut.of(row) for row in dataset_service.list_datasets(session, team.id)]
