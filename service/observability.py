"""Prometheus metrics: job gauges read from the database at scrape time, API request latency.

The job gauges come from a custom collector (prometheus_client's documented pattern for values
that live elsewhere): every scrape counts the jobs table, so restarts and several API processes
never disagree. Each app builds its own CollectorRegistry; nothing global to reset in tests.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from models import Job, MetricPoint, Team
from service.db import SessionFactory
from service.states import JobStatus

# Request latencies: API calls are milliseconds; uploads and long metric reads take seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class RunningJob:
    job_id: uuid.UUID
    name: str
    worker: str | None
    lease_expires_at: datetime | None
    steps_per_second: float | None


@dataclass(frozen=True)
class JobSnapshot:
    """What one scrape reports, read in one session."""

    by_team_state: dict[tuple[str, str], int]
    running: list[RunningJob] = field(default_factory=list)

    @property
    def queued(self) -> int:
        return sum(n for (_, state), n in self.by_team_state.items() if state == JobStatus.QUEUED)


# The training loop logs this series every `log_every` steps of every job.
SPEED_SERIES = "loss"


def steps_per_second(session: Session, job_id: uuid.UUID) -> float | None:
    """Training speed from the two latest logged losses: Δstep / Δwall_time (None if unknown).

    One series only, so the metrics primary key (job, name, step) answers from its index.
    """
    rows = session.execute(
        select(MetricPoint.step, MetricPoint.wall_time)
        .where(MetricPoint.job_id == job_id, MetricPoint.name == SPEED_SERIES)
        .order_by(MetricPoint.step.desc())
        .limit(2)
    ).all()
    if len(rows) < 2:
        return None
    (step1, wall1), (step0, wall0) = rows
    elapsed = float(wall1) - float(wall0)
    return (step1 - step0) / elapsed if elapsed > 0 else None


def read_snapshot(session: Session) -> JobSnapshot:
    counts = session.execute(
        select(Team.name, Job.status, func.count())
        .join(Team, Team.id == Job.team_id)
        .group_by(Team.name, Job.status)
    ).all()
    running = session.execute(
        select(Job.id, Job.name, Job.lease_owner, Job.lease_expires_at).where(
            Job.status == JobStatus.RUNNING
        )
    ).all()
    return JobSnapshot(
        by_team_state={(team, state): n for team, state, n in counts},
        running=[
            RunningJob(job_id, name, owner, expires, steps_per_second(session, job_id))
            for job_id, name, owner, expires in running
        ],
    )


class JobCollector(Collector):
    """Jobs by state and team, queue depth, training speed and worker heartbeats."""

    def __init__(
        self,
        factory: SessionFactory,
        lease_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.factory = factory
        self.lease_seconds = lease_seconds
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("regimen_database_up", "1 if the last scrape read the database")
        try:
            with self.factory() as session:
                snapshot = read_snapshot(session)
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from self._families(snapshot)

    def _families(self, snapshot: JobSnapshot) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "regimen_jobs", "Jobs in each state, per team", labels=["state", "team"]
        )
        # Every state of every team that has jobs, zeros included, so rates and alerts see 0.
        for team in sorted({team for team, _ in snapshot.by_team_state}):
            for state in JobStatus:
                jobs.add_metric([state.value, team], snapshot.by_team_state.get((team, state), 0))
        yield jobs

        yield GaugeMetricFamily(
            "regimen_queue_depth", "Jobs waiting for a worker (status queued)", snapshot.queued
        )

        speed = GaugeMetricFamily(
            "regimen_training_steps_per_second",
            "Optimizer steps per second of each running job, from its two latest logged losses",
            labels=["job_id", "job_name"],
        )
        heartbeat = GaugeMetricFamily(
            "regimen_worker_last_heartbeat_timestamp_seconds",
            "Unix time of each worker's latest lease renewal (running jobs only)",
            labels=["worker"],
        )
        lease_age = GaugeMetricFamily(
            "regimen_job_lease_age_seconds",
            "Seconds since each running job's lease was last renewed",
            labels=["job_id", "worker"],
        )
        now = self.clock()
        latest: dict[str, float] = {}
        for job in snapshot.running:
            if job.steps_per_second is not None:
                speed.add_metric([str(job.job_id), job.name], job.steps_per_second)
            if job.worker is None or job.lease_expires_at is None:
                continue
            # A renewal sets expires = now + lease_seconds, so the renewal time is the difference.
            renewed = job.lease_expires_at.timestamp() - self.lease_seconds
            latest[job.worker] = max(renewed, latest.get(job.worker, renewed))
            lease_age.add_metric([str(job.job_id), job.worker], max(0.0, now - renewed))
        for worker, renewed in sorted(latest.items()):
            heartbeat.add_metric([worker], renewed)
        yield speed
        yield heartbeat
        yield lease_age


@dataclass(frozen=True)
class ApiMetrics:
    registry: CollectorRegistry
    request_latency: Histogram


def api_metrics(factory: SessionFactory, lease_seconds: float) -> ApiMetrics:
    """A fresh registry for one app: the job collector and the request-latency histogram."""
    registry = CollectorRegistry()
    registry.register(JobCollector(factory, lease_seconds))
    latency = Histogram(
        "regimen_api_request_duration_seconds",
        "Time from request to response headers, by method, route template and status",
        labelnames=["method", "route", "status"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    return ApiMetrics(registry, latency)
