"""Every example spec is valid as it is."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from trainlib import parse_spec

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").rglob("*.yaml"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_is_a_valid_job_spec(path: Path) -> None:
    spec = parse_spec(yaml.safe_load(path.read_text()))
    assert spec.name
