"""Published checkpoints: fenced registration, listing, the latest one, pruning.

A trainer writes its files in its attempt's own folder (`.attempt-N/` under the job's artifact
folder). Publishing hard-links (or copies) a file into the job's folder under a temporary name and
renames it atomically, while the job row is locked by the attempt that holds the lease: a stale
attempt (a zombie whose lease expired) publishes nothing and registers nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Checkpoint
from service.jobs import lock_attempt
from service.storage import ArtifactStore

STATE_PREFIX = "state-"


def is_state_file(name: str) -> bool:
    """A full-state checkpoint (resumable), as opposed to a weights-only file."""
    return name.startswith(STATE_PREFIX) and name.endswith(".safetensors")


def attempt_dir(store: ArtifactStore, job_id: uuid.UUID, attempt: int) -> Path:
    """Where an attempt's trainer writes; hidden from the artifact listing."""
    return store.job_dir(job_id) / f".attempt-{attempt}"


def publish_file(store: ArtifactStore, job_id: uuid.UUID, src: Path) -> Path:
    """Place `src` in the job's folder under its own name, atomically (never a partial file)."""
    dest = store.path(job_id, src.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)  # same file system: no copy of a large checkpoint
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    return dest


def publish_weights(
    session: Session,
    store: ArtifactStore,
    job_id: uuid.UUID,
    attempt: int,
    owner: str,
    src: Path,
) -> bool:
    """Publish a weights-only file (checkpoint.safetensors, averaged models); fenced."""
    if lock_attempt(session, job_id, attempt, owner) is None:
        return False
    publish_file(store, job_id, src)
    return True


def register_checkpoint(
    session: Session,
    store: ArtifactStore,
    *,
    job_id: uuid.UUID,
    attempt: int,
    owner: str,
    step: int,
    src: Path,
    metrics: dict[str, float],
    keep: int,
) -> bool:
    """Publish a full-state checkpoint and record it, then prune; False if the attempt is stale."""
    if lock_attempt(session, job_id, attempt, owner) is None:
        return False
    dest = publish_file(store, job_id, src)
    row = session.get(Checkpoint, (job_id, dest.name))
    if row is None:
        row = Checkpoint(job_id=job_id, name=dest.name)
        session.add(row)
    row.attempt = attempt
    row.step = step
    row.size_bytes = dest.stat().st_size
    row.metrics = dict(metrics)
    session.flush()
    prune(session, store, job_id, keep)
    return True


def list_checkpoints(session: Session, job_id: uuid.UUID) -> list[Checkpoint]:
    return list(
        session.scalars(
            select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step)
        )
    )


def find_checkpoint(session: Session, job_id: uuid.UUID, name: str | None) -> Checkpoint | None:
    """The named checkpoint, or with None the latest (highest step)."""
    if name is not None:
        return session.get(Checkpoint, (job_id, name))
    return session.scalar(
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id)
        .order_by(Checkpoint.step.desc())
        .limit(1)
    )


def _val_loss(row: Checkpoint) -> float | None:
    value: Any = (row.metrics or {}).get("val_loss")
    return float(value) if isinstance(value, int | float) else None


def to_keep(rows: list[Checkpoint], keep: int) -> set[str]:
    """The last `keep` by step, plus the best (lowest val_loss) of all."""
    by_step = sorted(rows, key=lambda r: r.step)
    names = {r.name for r in by_step[-keep:]}
    scored = [(loss, r.step, r.name) for r in rows if (loss := _val_loss(r)) is not None]
    if scored:
        names.add(min(scored)[2])
    return names


def prune(session: Session, store: ArtifactStore, job_id: uuid.UUID, keep: int) -> list[str]:
    """Delete the rows and files of checkpoints outside `to_keep`; returns their names."""
    rows = list_checkpoints(session, job_id)
    kept = to_keep(rows, keep)
    removed = []
    for row in rows:
        if row.name not in kept:
            session.delete(row)
            with contextlib.suppress(FileNotFoundError, ValueError):
                store.path(job_id, row.name).unlink()
            removed.append(row.name)
    return removed
