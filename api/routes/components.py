"""/v1/components: every registered component with its settings schema and paper."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from api.deps import TeamDep
from trainlib.catalog import catalog

router = APIRouter(prefix="/v1/components", tags=["components"])


@router.get("")
def list_components(team: TeamDep) -> dict[str, list[dict[str, Any]]]:
    return catalog()


@router.get("/{kind}")
def list_kind(kind: str, team: TeamDep) -> list[dict[str, Any]]:
    everything = catalog()
    if kind not in everything:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"unknown component kind {kind!r}; valid kinds: {', '.join(everything)}",
        )
    return everything[kind]
