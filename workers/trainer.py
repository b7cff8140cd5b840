"""The trainer process: `python -m workers.trainer JOB_ID ATTEMPT OWNER RESULT_FILE`.

Runs in its own process group, so the supervisor can stop it (SIGTERM: checkpoint and stop at
the next step; SIGKILL after a grace period) without touching the worker. It writes in its
attempt's own folder, resumes from the job's latest registered checkpoint (a retried attempt) or
from the parent's (a fork), and publishes through the fenced DatabaseSink.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import torch

from models import Job
from service.checkpoints import attempt_dir, find_checkpoint, is_state_file
from service.datasets import dataset_resolver
from service.db import SessionFactory, make_engine, make_session_factory, transaction
from service.jobs import add_event
from service.logging import bind, configure_logging
from service.outages import is_connection_error
from service.references import resolver
from service.settings import Settings
from service.states import FailureReason
from service.storage import ArtifactStore
from service.training_sink import DatabaseSink, DatabaseUnavailable, LeaseLost
from trainlib.checkpoint import read_state_info
from trainlib.distributed import from_environment, shutdown
from trainlib.errors import TrainingError
from trainlib.loop import train
from trainlib.spec import JobSpec, parse_spec, resolve, spec_hash
from workers.outcome import LEASE_LOST_EXIT, Outcome

log = logging.getLogger("regimen.trainer")


@dataclass(frozen=True)
class StartPoint:
    """Where an attempt starts: a full state to resume, or weights to warm-start from."""

    resume_from: Path | None = None
    warm_start: Path | None = None
    why: str | None = None


def start_point(factory: SessionFactory, store: ArtifactStore, job: Job, digest: str) -> StartPoint:
    """This job's latest checkpoint (a retry); else the fork source: its whole state when the
    fork's spec is the one that wrote it, else only its model weights (changed settings)."""
    with factory() as session:
        own = find_checkpoint(session, job.id, None)
    if own is not None:
        path = store.path(job.id, own.name)
        return StartPoint(resume_from=path, why=f"resuming from {own.name} (step {own.step})")
    if job.parent_job_id is None or not job.forked_from:
        return StartPoint()
    source = store.path(job.id, job.forked_from)  # linked in at the fork
    origin = f"{job.parent_job_id}/{job.forked_from}"
    if read_state_info(source).spec_hash == digest:
        return StartPoint(resume_from=source, why=f"forked from {origin}: continuing its state")
    return StartPoint(warm_start=source, why=f"forked from {origin}: its weights, fresh state")


def watch_supervisor(sink: DatabaseSink, period: float = 0.25) -> None:
    """If the supervisor dies (a killed worker), checkpoint and stop rather than train on
    unsupervised until the lease runs out: the retry then resumes from a fresher state."""
    parent = os.getppid()

    def watch() -> None:
        while not sink.stop_requested.wait(period):
            if os.getppid() != parent:
                log.warning("the supervisor (pid %d) is gone: checkpointing and stopping", parent)
                sink.stop_requested.set()

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def record_devices(
    factory: SessionFactory, job_id: uuid.UUID, attempt: int, processes: int
) -> None:
    """The devices this attempt sees, in its event history (what the scheduler gave it)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    with transaction(factory) as session:
        add_event(
            session,
            job_id,
            attempt,
            "devices",
            cuda_visible_devices=visible,
            processes=processes,
            cuda=torch.cuda.is_available(),
        )


def out_of_memory(spec: JobSpec) -> Outcome:
    batch = getattr(spec.data, "batch_size", "?")
    return Outcome(
        "failed",
        reason=FailureReason.OUT_OF_MEMORY,
        message=f"out of memory at batch size {batch}; lower data.batch_size or the model's width",
    )


def run(job_id: uuid.UUID, attempt: int, owner: str, result: Path) -> int:
    settings = Settings()
    engine = make_engine(settings)
    factory = make_session_factory(engine)
    store = ArtifactStore(settings.resolved_artifact_dir)
    sink = DatabaseSink(
        factory,
        job_id,
        attempt,
        owner,
        store=store,
        keep_checkpoints=settings.keep_checkpoints,
        retry_seconds=settings.db_retry_seconds,
    )

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        sink.stop_requested.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    dist = from_environment()  # one of N processes of a multi-GPU job, under torchrun
    if dist.world_size == 1:
        watch_supervisor(sink)  # under torchrun the parent is torchrun, which the group stops
    with factory() as session:
        job = session.get(Job, job_id)
        if job is None:
            Outcome("failed", reason="internal_error", message="job not found").write(result)
            return 0
        team_id = job.team_id
    spec = parse_spec(job.resolved_spec)
    out_dir = attempt_dir(store, job_id, attempt)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        if dist.is_main:
            record_devices(factory, job_id, attempt, dist.world_size)
        start = start_point(factory, store, job, spec_hash(resolve(spec)))
        if start.why:
            log.info("job %s attempt %d: %s", job_id, attempt, start.why)
        done = train(
            spec,
            sink,
            out_dir=out_dir,
            resume_from=start.resume_from,
            warm_start=start.warm_start,
            resolve_job=resolver(factory, team_id, store),
            resolve_dataset=dataset_resolver(factory, team_id, store),
            prune_checkpoints=False,  # the sink publishes, then removes each; the database prunes
            distributed=dist,
        )
        weights = [p for p in sorted(out_dir.glob("*.safetensors")) if not is_state_file(p.name)]
        sink.close(extra_files=weights)
        outcome = Outcome(done.status, step=done.step)
    except LeaseLost as exc:
        log.warning("%s", exc)
        return LEASE_LOST_EXIT
    except TrainingError as exc:
        outcome = Outcome("failed", reason=exc.reason, message=str(exc))
    except (torch.cuda.OutOfMemoryError, MemoryError):
        outcome = out_of_memory(spec)
    except DatabaseUnavailable as exc:
        outcome = Outcome("failed", reason=FailureReason.INFRASTRUCTURE, message=str(exc))
    except Exception as exc:
        traceback.print_exc()
        reason = FailureReason.INFRASTRUCTURE if is_connection_error(exc) else "internal_error"
        outcome = Outcome("failed", reason=reason, message=f"{type(exc).__name__}: {exc}")
    if outcome.status == "failed":
        # Keep every metric up to the failure (a diverged run's curve is the evidence).
        try:
            sink.close()
        except (LeaseLost, DatabaseUnavailable) as exc:
            log.warning("metrics of the failed attempt not saved: %s", exc)
    engine.dispose()
    shutdown(dist)
    if dist.is_main:  # rank 0 speaks for every process of the job
        outcome.write(result)
    return 0


def main(argv: list[str]) -> int:
    job_id, attempt, owner, result = argv
    configure_logging(Settings())
    bind(job_id=job_id, attempt=int(attempt))  # on every line this process logs
    return run(uuid.UUID(job_id), int(attempt), owner, Path(result))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
