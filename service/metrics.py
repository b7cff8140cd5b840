"""The metrics store: idempotent batch writes and downsampled reads."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models import MetricPoint
from trainlib.sink import Metric


def write_metrics(session: Session, job_id: uuid.UUID, points: Sequence[Metric]) -> None:
    """Upsert on (job, name, step): writing the same batch twice leaves one row per step."""
    if not points:
        return
    rows = [
        {
            "job_id": job_id,
            "name": p.name,
            "step": p.step,
            "value": p.value,
            "wall_time": p.wall_time,
        }
        for p in points
    ]
    dialect = session.get_bind().dialect.name
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(MetricPoint).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["job_id", "name", "step"],
        set_={"value": stmt.excluded.value, "wall_time": stmt.excluded.wall_time},
    )
    session.execute(stmt)


def downsample(points: list[tuple[int, float]], max_points: int) -> list[tuple[int, float]]:
    """Evenly spaced points, always keeping the first and the last."""
    n = len(points)
    if n <= max_points:
        return points
    if max_points == 1:
        return [points[-1]]
    picks = sorted({round(i * (n - 1) / (max_points - 1)) for i in range(max_points)})
    return [points[i] for i in picks]


def read_metrics(
    session: Session,
    job_id: uuid.UUID,
    *,
    names: Sequence[str] = (),
    after_step: int | None = None,
    max_points: int | None = None,
) -> dict[str, list[tuple[int, float]]]:
    query = select(MetricPoint.name, MetricPoint.step, MetricPoint.value).where(
        MetricPoint.job_id == job_id
    )
    if names:
        query = query.where(MetricPoint.name.in_(names))
    if after_step is not None:
        query = query.where(MetricPoint.step > after_step)
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for name, step, value in session.execute(query.order_by(MetricPoint.name, MetricPoint.step)):
        series[name].append((step, value))
    if max_points is not None:
        return {name: downsample(pts, max_points) for name, pts in series.items()}
    return dict(series)
