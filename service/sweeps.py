"""Sweeps: a base spec and values over spec paths; every child is validated before anything is
stored, then each becomes an ordinary job (submit_job) pointing back at its sweep.

Grid search takes the Cartesian product of the listed values; random search draws each path
uniformly, or log-uniformly with `log: true` (Bergstra & Bengio, "Random Search for
Hyper-Parameter Optimization", JMLR 2012: random trials cover the few parameters that matter
better than a grid of the same size).
"""

from __future__ import annotations

import itertools
import math
import random
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from client.spec_paths import PathError, apply_overrides, parse_path
from models import Job, Sweep
from service.jobs import submit_job
from service.references import check_references
from service.states import JobStatus
from service.storage import ArtifactStore
from trainlib.spec import SpecError, parse_spec, resolve

MAX_CHILDREN = 256


class RandomRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float
    high: float
    log: bool = False
    integer: bool = Field(False, description="round each draw to an integer")

    @model_validator(mode="after")
    def _ordered(self) -> RandomRange:
        if not self.low < self.high:
            raise ValueError("low must be below high")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class SweepRequest(BaseModel):
    """POST /v1/sweeps: `grid` values, `random` ranges drawn `trials` times, or both (product)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("sweep", min_length=1, max_length=150)
    spec: dict[str, Any] = Field(description="the base job spec")
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    random: dict[str, RandomRange] = Field(default_factory=dict)
    trials: int | None = Field(None, ge=1, le=MAX_CHILDREN, description="random draws")
    metric: str = Field("val_accuracy", min_length=1, max_length=100)
    goal: Literal["min", "max"] = "max"
    seed: int = Field(0, ge=0, description="seed of the random draws")

    @model_validator(mode="after")
    def _consistent(self) -> SweepRequest:
        if not self.grid and not self.random:
            raise ValueError("give grid values or random ranges (or both)")
        if self.random and self.trials is None:
            raise ValueError("random ranges need trials: how many draws")
        if self.trials is not None and not self.random:
            raise ValueError("trials only applies to random ranges")
        for path, values in self.grid.items():
            parse_path(path)
            if not values:
                raise ValueError(f"grid path {path!r} has no values")
        for path in self.random:
            parse_path(path)
            if path in self.grid:
                raise ValueError(f"{path!r} is both in grid and random")
        return self


def expand(request: SweepRequest) -> list[dict[str, Any]]:
    """Each child's overrides: the grid's product, times `trials` seeded random draws."""
    paths = list(request.grid)
    points = [dict(zip(paths, combo, strict=True)) for combo in itertools.product(
        *(request.grid[p] for p in paths)
    )]  # fmt: skip
    if request.random:
        rng = random.Random(request.seed)
        trials = request.trials or 1
        points = [
            {**point, **{p: _draw(rng, r) for p, r in request.random.items()}}
            for point in points
            for _ in range(trials)
        ]
    if len(points) > MAX_CHILDREN:
        raise SpecError(
            [{"path": "grid", "message": f"{len(points)} children; at most {MAX_CHILDREN}"}]
        )
    return points


def _draw(rng: random.Random, r: RandomRange) -> float | int:
    if r.log:
        value = math.exp(rng.uniform(math.log(r.low), math.log(r.high)))
    else:
        value = rng.uniform(r.low, r.high)
    return round(value) if r.integer else value


def child_specs(request: SweepRequest, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every child's raw spec, or one SpecError naming each bad child and path."""
    errors: list[dict[str, str]] = []
    children = []
    for i, overrides in enumerate(points):
        label = ", ".join(f"{p}={v!r}" for p, v in overrides.items())
        try:
            child = apply_overrides(request.spec, overrides)
            child["name"] = f"{request.name}-{i}"
            parse_spec(child)
        except PathError as exc:
            errors.append({"path": f"children[{i}]", "message": f"{exc} ({label})"})
            continue
        except SpecError as exc:
            errors += [
                {"path": f"children[{i}].{e['path']}", "message": f"{e['message']} ({label})"}
                for e in exc.errors
            ]
            continue
        children.append(child)
    if errors:
        raise SpecError(errors)
    return children


@dataclass(frozen=True)
class Created:
    sweep: Sweep
    jobs: list[Job]


def create_sweep(
    session: Session,
    team_id: uuid.UUID,
    request: SweepRequest,
    store: ArtifactStore,
    *,
    max_priority: str = "normal",
    pool: str = "regimen",
) -> Created:
    """Validate every child (SpecError, nothing written), then store the sweep and its jobs.

    Each child goes through submit_job with the caller's key limits and the pool, as a job
    submitted alone would; the caller commits (or, on any error, nothing is stored).
    """
    points = expand(request)
    children = child_specs(request, points)
    for child in children:
        check_references(session, team_id, resolve(parse_spec(child)), store)
    sweep = Sweep(
        team_id=team_id,
        name=request.name,
        base_spec=request.spec,
        parameters={},
        method="random" if request.random else "grid",
        metric=request.metric,
        goal=request.goal,
    )
    session.add(sweep)
    session.flush()
    jobs = []
    for child in children:
        job = submit_job(
            session,
            team_id=team_id,
            raw_spec=child,
            store=store,
            max_priority=max_priority,
            pool=pool,
        ).job
        job.sweep_id = sweep.id
        jobs.append(job)
    sweep.parameters = {
        "grid": request.grid,
        "random": {p: r.model_dump() for p, r in request.random.items()},
        "trials": request.trials,
        "seed": request.seed,
        "children": [
            {"job_id": str(j.id), "overrides": o} for j, o in zip(jobs, points, strict=True)
        ],
    }
    session.flush()
    return Created(sweep, jobs)


class SweepNotFound(LookupError):
    pass


def get_sweep(session: Session, sweep_id: uuid.UUID, team_id: uuid.UUID) -> Sweep:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None or sweep.team_id != team_id:
        raise SweepNotFound(f"no sweep {sweep_id}")
    return sweep


def list_sweeps(session: Session, team_id: uuid.UUID, limit: int = 50) -> list[Sweep]:
    return list(
        session.scalars(
            select(Sweep)
            .where(Sweep.team_id == team_id)
            .order_by(Sweep.created_at.desc(), Sweep.id.desc())
            .limit(limit)
        )
    )


def children_of(session: Session, sweep: Sweep) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.sweep_id == sweep.id)))


def summarize(sweep: Sweep, jobs: list[Job]) -> dict[str, Any]:
    """Status counts, each child's overrides and final metric, and the best succeeded child."""
    by_id = {str(j.id): j for j in jobs}
    children = []
    for entry in sweep.parameters.get("children", []):
        job = by_id.get(entry["job_id"])
        if job is None:
            continue  # a child deleted since
        value = job.latest_metrics.get(sweep.metric)
        children.append(
            {
                "job_id": entry["job_id"],
                "name": job.name,
                "status": job.status,
                "overrides": entry["overrides"],
                "value": value,
                "failure_reason": job.failure_reason,
            }
        )
    finished = [
        c
        for c in children
        if c["status"] == JobStatus.SUCCEEDED
        and isinstance(c["value"], float | int)
        and math.isfinite(c["value"])
    ]
    sign = 1 if sweep.goal == "max" else -1
    best = max(finished, key=lambda c: sign * c["value"], default=None)
    counts = Counter(c["status"] for c in children)
    return {
        "id": sweep.id,
        "name": sweep.name,
        "method": sweep.method,
        "metric": sweep.metric,
        "goal": sweep.goal,
        "created_at": sweep.created_at,
        "counts": dict(counts),
        "done": all(JobStatus(c["status"]).is_final for c in children),
        "children": children,
        "best": best,
    }
