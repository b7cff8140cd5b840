"""Request dependencies: settings, a database session, the job queue, the caller's team."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from models import ApiKey, Team
from service.auth import authenticate_key
from service.queue import JobQueue
from service.settings import Settings
from service.storage import ArtifactStore


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        yield session


def get_queue(request: Request) -> JobQueue:
    queue: JobQueue = request.app.state.queue
    return queue


def get_store(request: Request) -> ArtifactStore:
    store: ArtifactStore = request.app.state.store
    return store


_bearer = HTTPBearer(auto_error=False)


def get_api_key(
    session: Annotated[Session, Depends(get_session)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send 'Authorization: Bearer <key>' "
            "(create one with `python -m service.admin create-key --team NAME`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key = authenticate_key(session, credentials.credentials)
    if key is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid or revoked API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return key


def get_team(
    session: Annotated[Session, Depends(get_session)],
    key: Annotated[ApiKey, Depends(get_api_key)],
) -> Team:
    team = session.get(Team, key.team_id)
    assert team is not None  # the key's foreign key cascades: no key without its team
    return team


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
TeamDep = Annotated[Team, Depends(get_team)]
KeyDep = Annotated[ApiKey, Depends(get_api_key)]
