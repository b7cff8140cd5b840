"""/v1/cluster: workers, their GPUs, what runs where, and each team's usage against its quota."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import SessionDep, SettingsDep, TeamDep
from models.base import utcnow
from service.scheduler import Policy, cluster_view

router = APIRouter(prefix="/v1/cluster", tags=["cluster"])


@router.get("")
def get_cluster(team: TeamDep, session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    return cluster_view(session, utcnow(), Policy.of(settings), viewer=team.id)
