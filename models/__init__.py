"""SQLAlchemy 2 typed ORM models, shared by api/ and workers/. Created only by Alembic."""

from models.base import Base
from models.tables import ApiKey, Job, JobEvent, MetricPoint, Team

__all__ = ["ApiKey", "Base", "Job", "JobEvent", "MetricPoint", "Team"]
