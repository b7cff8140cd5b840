"""SQLAlchemy 2 typed ORM models, shared by api/ and workers/. Created only by Alembic."""

from models.base import Base
from models.cluster import GpuAllocation, Placement, TeamQuota, Worker
from models.tables import ApiKey, Checkpoint, Dataset, Job, JobEvent, MetricPoint, Sweep, Team

__all__ = [
    "ApiKey",
    "Base",
    "Checkpoint",
    "Dataset",
    "GpuAllocation",
    "Job",
    "JobEvent",
    "MetricPoint",
    "Placement",
    "Sweep",
    "Team",
    "TeamQuota",
    "Worker",
]
