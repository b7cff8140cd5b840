"""The job state machine: every one of the 25 (current, target) pairs against an explicit table."""

from __future__ import annotations

import itertools

import pytest

from service.states import IllegalTransition, JobStatus, check_transition

Q, R, S, F, C = "queued", "running", "succeeded", "failed", "cancelled"

# Written out by hand (not derived from service.states.TRANSITIONS), so a change there fails here.
EXPECTED_LEGAL: frozenset[tuple[str, str]] = frozenset(
    {
        (Q, R),
        (Q, C),
        (Q, F),
        (R, S),
        (R, F),
        (R, C),
        (R, Q),  # a retry after a lost worker
    }
)
ALL_STATUSES = (Q, R, S, F, C)
ALL_PAIRS = list(itertools.product(ALL_STATUSES, ALL_STATUSES))


def test_the_enum_has_exactly_the_five_statuses() -> None:
    assert {s.value for s in JobStatus} == set(ALL_STATUSES)
    assert len(ALL_PAIRS) == 25


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS)
def test_transition(current: str, target: str) -> None:
    if (current, target) in EXPECTED_LEGAL:
        result = check_transition(current, target)
        assert result == JobStatus(target)
        assert isinstance(result, JobStatus)
    else:
        with pytest.raises(IllegalTransition) as info:
            check_transition(current, target)
        assert info.value.current == JobStatus(current)
        assert info.value.target == JobStatus(target)
        assert current in str(info.value) and target in str(info.value)


@pytest.mark.parametrize("final", [S, F, C])
def test_final_statuses_go_nowhere(final: str) -> None:
    assert JobStatus(final).is_final
    for target in ALL_STATUSES:
        with pytest.raises(IllegalTransition):
            check_transition(final, target)


@pytest.mark.parametrize("status", [Q, R])
def test_active_statuses_are_not_final(status: str) -> None:
    assert not JobStatus(status).is_final


def test_enum_members_are_accepted_as_well_as_strings() -> None:
    assert check_transition(JobStatus.QUEUED, JobStatus.RUNNING) is JobStatus.RUNNING


def test_an_unknown_status_is_rejected() -> None:
    with pytest.raises(ValueError):
        check_transition("queued", "paused")
