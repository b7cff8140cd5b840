"""The one settings object, read from REGIMEN_* environment variables (or a .env file)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REGIMEN_", env_file=".env", extra="ignore")

    # Defaults are the embedded setup: SQLite and a filesystem broker under var/.
    var_dir: Path = Path("var")
    database_url: str = ""
    broker_url: str = "filesystem://"
    artifact_dir: Path | None = None
    task_queue: str = "regimen"

    lease_seconds: float = Field(60.0, gt=0, description="a running attempt's lease length")
    heartbeat_seconds: float = Field(5.0, gt=0, description="how often the supervisor renews it")
    cancel_grace_seconds: float = Field(5.0, gt=0, description="SIGTERM, then SIGKILL after this")
    cancel_poll_seconds: float = Field(1.0, gt=0, description="how often a cancel flag is read")
    maintenance_seconds: float = Field(10.0, gt=0, description="reaper and dispatcher period")
    dispatch_grace_seconds: float = Field(
        5.0, ge=0, description="a never-dispatched queued job is sent after this"
    )
    redispatch_seconds: float = Field(
        300.0, gt=0, description="a dispatched job no worker claimed is sent again after this"
    )
    keep_checkpoints: int = Field(3, ge=1, description="last k kept, plus the best by val_loss")
    db_retry_seconds: float = Field(
        120.0, gt=0, description="how long a worker retries the database before giving up"
    )
    max_body_bytes: int = Field(1_000_000, gt=0, description="largest accepted request body")
    max_upload_bytes: int = Field(
        200_000_000, gt=0, description="largest data set file POST /v1/datasets accepts"
    )
    max_page_size: int = Field(200, gt=0)
    max_metric_points: int = Field(10_000, gt=0)
    worker_id: str = ""
    # The shared cluster (service/scheduler.py).
    worker_gpus: str = Field(
        "", description="GPU indices this worker owns, e.g. '0' or '0,1,2,3'; empty on a CPU worker"
    )
    worker_slots: int = Field(1, ge=1, description="jobs at once (the Celery concurrency)")
    worker_host: str = Field(
        "", description="the node's name (default: the hostname); workers of one node share it"
    )
    fair_share_window_seconds: float = Field(3600.0, gt=0, description="usage look-back")
    starvation_seconds: float = Field(
        1800.0, gt=0, description="a job waiting longer is promoted one priority level"
    )
    worker_ttl_seconds: float = Field(
        30.0, gt=0, description="a worker not seen for this long holds no capacity"
    )
    # Observability (service/logging.py, service/observability.py).
    log_format: Literal["json", "text"] = Field(
        "json", description="json: one object per line for machines; text: for humans"
    )
    log_level: str = Field("INFO", description="root log level: DEBUG, INFO, WARNING, ...")
    metrics_token: str = Field(
        "", description="if set, GET /metrics needs 'Authorization: Bearer <token>'"
    )

    @property
    def resolved_worker_host(self) -> str:
        return self.worker_host or socket.gethostname()

    @property
    def gpu_indices(self) -> list[int]:
        return sorted({int(part) for part in self.worker_gpus.split(",") if part.strip()})

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            # Plain postgresql:// means psycopg 3 here, not SQLAlchemy's psycopg2 default.
            if self.database_url.startswith("postgresql://"):
                return "postgresql+psycopg://" + self.database_url.removeprefix("postgresql://")
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'regimen.db').resolve()}"

    @property
    def resolved_artifact_dir(self) -> Path:
        return (self.artifact_dir or self.var_dir / "artifacts").resolve()

    @property
    def broker_dir(self) -> Path:
        return (self.var_dir / "broker").resolve()

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")
