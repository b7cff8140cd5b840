"""The shared cluster: workers and what they hold, team quotas.

A job placed on a worker holds one of its slots and, for a GPU job, specific GPU indices of its
host; the primary keys make double booking impossible whatever the dispatchers do concurrently.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Double, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JsonType, UtcDateTime, utcnow

Timestamp = UtcDateTime()


class Worker(Base):
    """A worker process: the GPU indices it owns and its own task queue; alive while it beats."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    gpus: Mapped[list[Any]] = mapped_column(JsonType, default=list, comment="GPU indices")
    slots: Mapped[int] = mapped_column(Integer, comment="jobs it runs at once")
    pool: Mapped[str] = mapped_column(String(200), comment="the cluster it serves (task queue)")
    queue: Mapped[str] = mapped_column(String(200), comment="its own Celery queue")
    started_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Placement(Base):
    """A job's place on a worker: one slot, from placement until the job ends."""

    __tablename__ = "placements"
    __table_args__ = (UniqueConstraint("worker_id", "slot"),)

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    worker_id: Mapped[str] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"))
    slot: Mapped[int] = mapped_column(Integer)
    gpus: Mapped[list[Any]] = mapped_column(JsonType, default=list)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class GpuAllocation(Base):
    """One GPU of one host held by one job.

    Keyed by the host, not the worker: two workers of a node may list the same GPU (one per GPU
    for small jobs, one for the whole node for big ones) and still never share it.
    """

    __tablename__ = "gpu_allocations"

    host: Mapped[str] = mapped_column(String(200), primary_key=True)
    gpu: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker_id: Mapped[str] = mapped_column(ForeignKey("workers.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))


class TeamQuota(Base):
    """A team's limits (None: unlimited) and its fair-share weight."""

    __tablename__ = "team_quotas"

    team_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    max_running_jobs: Mapped[int | None] = mapped_column(Integer)
    max_gpus: Mapped[int | None] = mapped_column(Integer, comment="GPUs in use at once")
    max_queued_jobs: Mapped[int | None] = mapped_column(Integer)
    weight: Mapped[float] = mapped_column(Double, default=1.0, comment="fair-share weight")
