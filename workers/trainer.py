"""The trainer process: `python -m workers.trainer JOB_ID ATTEMPT OWNER RESULT_FILE`.

Runs in its own process group, so the supervisor can stop it (SIGTERM: checkpoint and stop at
the next step; SIGKILL after a grace period) without touching the worker.
"""

from __future__ import annotations

import logging
import signal
import sys
import traceback
import uuid
from pathlib import Path
from types import FrameType

import torch

from models import Job
from service.db import make_engine, make_session_factory
from service.logging import bind, configure_logging
from service.references import resolver
from service.settings import Settings
from service.storage import ArtifactStore
from service.training_sink import DatabaseSink, LeaseLost
from trainlib.errors import TrainingError
from trainlib.loop import train
from trainlib.spec import parse_spec
from workers.outcome import LEASE_LOST_EXIT, Outcome

log = logging.getLogger("regimen.trainer")


def run(job_id: uuid.UUID, attempt: int, owner: str, result: Path) -> int:
    settings = Settings()
    engine = make_engine(settings)
    factory = make_session_factory(engine)
    sink = DatabaseSink(factory, job_id, attempt, owner)

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        sink.stop_requested.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    with factory() as session:
        job = session.get(Job, job_id)
        if job is None:
            Outcome("failed", reason="internal_error", message="job not found").write(result)
            return 0
        resolved = job.resolved_spec
        team_id = job.team_id
    spec = parse_spec(resolved)
    store = ArtifactStore(settings.resolved_artifact_dir)
    try:
        done = train(
            spec,
            sink,
            out_dir=store.job_dir(job_id),
            resolve_job=resolver(factory, team_id, store),
        )
        outcome = Outcome(done.status, step=done.step)
    except LeaseLost as exc:
        log.warning("%s", exc)
        return LEASE_LOST_EXIT
    except TrainingError as exc:
        outcome = Outcome("failed", reason=exc.reason, message=str(exc))
    except torch.cuda.OutOfMemoryError:
        outcome = Outcome(
            "failed",
            reason="out_of_memory",
            message=f"out of GPU memory at batch size {getattr(spec.data, 'batch_size', '?')}; "
            "lower data.batch_size or the model's width",
        )
    except Exception as exc:
        traceback.print_exc()
        outcome = Outcome("failed", reason="internal_error", message=f"{type(exc).__name__}: {exc}")
    finally:
        engine.dispose()
    outcome.write(result)
    return 0


def main(argv: list[str]) -> int:
    job_id, attempt, owner, result = argv
    configure_logging(Settings())
    bind(job_id=job_id, attempt=int(attempt))  # on every line this process logs
    return run(uuid.UUID(job_id), int(attempt), owner, Path(result))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
