"""The job state machine: queued -> running -> succeeded | failed | cancelled."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL


FINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    # running -> queued is a retry after an infrastructure failure (a lost worker).
    JobStatus.RUNNING: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED}
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class IllegalTransition(ValueError):
    def __init__(self, current: JobStatus, target: JobStatus) -> None:
        self.current, self.target = current, target
        super().__init__(f"a {current} job cannot become {target}")


def check_transition(current: str, target: str) -> JobStatus:
    """Return the target status, or raise IllegalTransition."""
    src, dst = JobStatus(current), JobStatus(target)
    if dst not in TRANSITIONS[src]:
        raise IllegalTransition(src, dst)
    return dst


class FailureReason(StrEnum):
    DIVERGED = "diverged"
    OUT_OF_MEMORY = "out_of_memory"
    TIMEOUT = "timeout"
    DATA_ERROR = "data_error"
    WORKER_LOST = "worker_lost"
    INFRASTRUCTURE = "infrastructure"  # the broker or the database connection was lost
    INTERNAL_ERROR = "internal_error"


# Failures of the platform, not of the job: retried while attempts are left.
RETRYABLE = frozenset({FailureReason.WORKER_LOST, FailureReason.INFRASTRUCTURE})
