"""Every registered optimizer, with its default settings, resumes bit-identically (2 + 2 steps
around a stop between log steps): its whole state goes through the full-state checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

import trainlib.spec  # noqa: F401  (registers every component)
from tests.checkpoint.helpers import assert_resume_is_bit_identical, job
from trainlib.registries import OPTIMIZERS


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_resumes_bit_identically_with_defaults(name: str, tmp_path: Path) -> None:
    spec = job(optimizer={"name": name}, steps=4, log_every=3, eval_every=4, checkpoint_every=4)
    assert_resume_is_bit_identical(spec, tmp_path, stop_at=2)
