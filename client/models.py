"""Typed results of the SDK: the API's JSON bodies as pydantic models (unknown fields ignored)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

FINAL = frozenset({"succeeded", "failed", "cancelled"})


class _Body(BaseModel):
    # A newer server may add fields: an older client keeps working.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Progress(_Body):
    step: int
    total: int | None = None
    fraction: float | None = None


class Failure(_Body):
    reason: str | None = None
    message: str | None = None


class Job(_Body):
    id: str
    name: str
    status: str
    attempt: int
    max_attempts: int
    progress: Progress
    latest_metrics: dict[str, float]
    failure: Failure | None = None
    cancel_requested: bool = False
    spec_hash: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    spec: dict[str, Any] | None = None
    resolved_spec: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.status in FINAL

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def failure_text(self) -> str:
        """`reason: message`, or the status for a job that did not fail."""
        if self.failure is None:
            return self.status
        return ": ".join(p for p in (self.failure.reason, self.failure.message) if p)


class JobPage(_Body):
    jobs: list[Job]
    next_cursor: str | None = None


class Series(_Body):
    steps: list[int]
    values: list[float]

    @property
    def points(self) -> list[tuple[int, float]]:
        return list(zip(self.steps, self.values, strict=True))


class Metrics(_Body):
    job_id: str
    series: dict[str, Series]


class Validation(_Body):
    valid: bool
    resolved_spec: dict[str, Any]
    spec_hash: str
    estimate: dict[str, Any]


class Event(_Body):
    """One server-sent event of a job's stream: `status`, `metrics`, `checkpoint`, ..."""

    id: str
    event: str
    data: dict[str, Any]

    @property
    def status(self) -> str | None:
        return self.data.get("status") if self.event == "status" else None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL

    def latest_values(self) -> dict[str, float]:
        """A metrics batch's newest value of each series."""
        values: dict[str, float] = {}
        for point in self.data.get("points", []):
            values.update(point["values"])
        return values


class SweepChild(_Body):
    job_id: str
    name: str
    status: str
    overrides: dict[str, Any]
    value: float | None = None
    failure_reason: str | None = None


class Sweep(_Body):
    id: str
    name: str
    method: str
    metric: str
    goal: str
    created_at: datetime
    counts: dict[str, int]
    done: bool
    children: list[SweepChild] = []
    best: SweepChild | None = None
