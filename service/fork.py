"""Forking: a new job that starts from one of a job's checkpoints, with spec changes.

The fork copies the parent's spec as submitted, applies the changes (dotted paths, the same as
`regimen submit --set`), validates it like any submission and records its lineage
(`parent_job_id`, `forked_from`). What it loads is decided by the trainer: the whole training
state when the changed spec still hashes the same (a plain resume under a new job), else the
parent's model weights only, with fresh optimizer, schedule and regularizer state — a changed
component (say a lower learning rate) must not be overwritten by the parent's saved state.
"""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy.orm import Session

from client.spec_paths import PathError, apply_overrides
from models import Job
from service.checkpoints import find_checkpoint, publish_file
from service.jobs import add_event, submit_job
from service.storage import ArtifactStore
from trainlib.spec import SpecError


class ForkError(ValueError):
    """The fork cannot start: no such checkpoint, or changes that do not apply."""


def fork_job(
    session: Session,
    *,
    parent: Job,
    checkpoint: str | None,
    changes: dict[str, Any],
    store: ArtifactStore,
) -> Job:
    row = find_checkpoint(session, parent.id, checkpoint)
    if row is None:
        which = f"no checkpoint named {checkpoint!r}" if checkpoint else "no checkpoints yet"
        raise ForkError(
            f"job {parent.id} has {which}; list them at /v1/jobs/{parent.id}/checkpoints"
        )
    if not store.path(parent.id, row.name).is_file():
        raise ForkError(f"checkpoint {row.name} of job {parent.id} is missing from storage")
    try:
        raw = apply_overrides(copy.deepcopy(parent.spec), changes)
    except PathError as exc:
        raise SpecError([{"path": "changes", "message": str(exc)}]) from None
    submitted = submit_job(session, team_id=parent.team_id, raw_spec=raw, store=store)
    job = submitted.job
    job.parent_job_id = parent.id
    job.forked_from = row.name
    job.pool = parent.pool  # the workers that can read the parent's checkpoint
    # The fork keeps its own link to the source: the parent may prune it meanwhile.
    publish_file(store, job.id, store.path(parent.id, row.name))
    add_event(
        session,
        job.id,
        0,
        "forked",
        parent=str(parent.id),
        checkpoint=row.name,
        step=row.step,
        changes=changes,
    )
    session.flush()
    return job
