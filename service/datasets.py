"""Uploaded data sets: received in a stream under a size limit, validated without unpickling,
stored once by content hash under the artifact store's `datasets/` folder, one row per team."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import Dataset
from service.storage import ArtifactStore
from trainlib.components.datasets_upload import DatasetResolver, read_upload

FOLDER = "datasets"  # beside the per-job folders, whose names are UUIDs


class UploadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the file is larger than the limit of {limit} bytes")


@dataclass(frozen=True)
class Incoming:
    """A received file, not yet validated: a temporary path, its SHA-256 and size."""

    path: Path
    content_hash: str
    size_bytes: int


def stored_path(store: ArtifactStore, content_hash: str, fmt: str) -> Path:
    return store.root / FOLDER / f"{content_hash}.{fmt}"


async def receive(chunks: AsyncIterator[bytes], store: ArtifactStore, limit: int) -> Incoming:
    """Write the stream to a temporary file while hashing it; over `limit`, stop and delete it."""
    incoming = store.root / FOLDER / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    path = incoming / uuid.uuid4().hex
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise UploadTooLarge(limit)
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Incoming(path, digest.hexdigest(), size)


def register(
    session: Session,
    store: ArtifactStore,
    *,
    team_id: uuid.UUID,
    name: str,
    fmt: str,
    incoming: Incoming,
    max_unpacked_bytes: int,
) -> tuple[Dataset, bool]:
    """Validate (UploadError if unusable), store the file once, record it for the team.

    Returns the row and whether it is new; the same file uploaded again by the team gives the
    existing row. The temporary file is gone afterwards in every case.
    """
    try:
        arrays = read_upload(incoming.path, fmt, max_unpacked_bytes)
        existing = _find(session, team_id, incoming.content_hash)
        if existing is not None:
            return existing, False
        final = stored_path(store, incoming.content_hash, fmt)
        if not final.exists():  # another team may have stored the same bytes already
            os.replace(incoming.path, final)
        row = Dataset(
            team_id=team_id,
            name=name,
            content_hash=incoming.content_hash,
            format=fmt,
            size_bytes=incoming.size_bytes,
            info=arrays.describe(),
        )
        session.add(row)
        try:
            session.flush()
        except IntegrityError:  # the same team uploading the same file at the same moment
            session.rollback()
            raced = _find(session, team_id, incoming.content_hash)
            assert raced is not None
            return raced, False
        return row, True
    finally:
        incoming.path.unlink(missing_ok=True)


def _find(session: Session, team_id: uuid.UUID, content_hash: str) -> Dataset | None:
    query = select(Dataset).where(Dataset.team_id == team_id, Dataset.content_hash == content_hash)
    return session.scalar(query)


def list_datasets(session: Session, team_id: uuid.UUID) -> list[Dataset]:
    query = select(Dataset).where(Dataset.team_id == team_id)
    return list(session.scalars(query.order_by(Dataset.created_at.desc(), Dataset.id)))


def _uploads(data: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(field path, data spec) of every `upload` data set: the job's, or a task sequence's base."""
    if isinstance(data, dict):
        if data.get("name") == "upload":
            yield path, data
        if isinstance(data.get("base"), dict):
            yield from _uploads(data["base"], f"{path}.base")


def dataset_problems(
    session: Session, team_id: uuid.UUID, resolved: dict[str, Any]
) -> list[dict[str, str]]:
    """One error per `upload` data set the team cannot use (unknown, another team's, nested)."""
    errors = []
    for path, data in _uploads(resolved.get("data"), "data"):
        ref = str(data.get("dataset"))
        if path != "data":
            errors.append(
                {"path": path, "message": "an uploaded data set must be the job's own data"}
            )
            continue
        row = session.get(Dataset, uuid.UUID(ref))  # the spec's pattern made it a UUID
        if row is None or row.team_id != team_id:
            message = f"no data set {ref} in your team (GET /v1/datasets lists them)"
            errors.append({"path": f"{path}.dataset", "message": message})
    return errors


def dataset_resolver(
    session_factory: Any, team_id: uuid.UUID, store: ArtifactStore
) -> DatasetResolver:
    """The trainer's `resolve_dataset`: a data set id of the team -> (stored file, format)."""

    def resolve(ref: str) -> tuple[Path, str]:
        with session_factory() as session:
            row = session.get(Dataset, uuid.UUID(ref))
            if row is None or row.team_id != team_id:
                raise LookupError(f"no data set {ref} in this team")
            return stored_path(store, row.content_hash, row.format), row.format

    return resolve
