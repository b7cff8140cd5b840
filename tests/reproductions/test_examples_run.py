"""Every example spec trains with `python -m trainlib run`, as it is but for a 2-step budget."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from bench.reproduce import EXAMPLES, merge
from trainlib.__main__ import main

SPECS = sorted(EXAMPLES.rglob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_trains_for_two_steps(path: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    short = merge(raw, {"train": {"steps": 2, "eval_every": 1, "log_every": 1}})
    spec = tmp_path / path.name
    spec.write_text(yaml.safe_dump(short))
    assert main(["run", str(spec), "--out", str(tmp_path / "out")]) == 0
    with (tmp_path / "out" / "metrics.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {int(r["step"]) for r in rows if r["name"] == "loss"} == {1, 2}


def test_the_reproductions_are_there() -> None:
    names = {str(p.relative_to(EXAMPLES)) for p in SPECS}
    assert {
        "grokking-modular.yaml",
        "qk-layernorm-lr-sweep/baseline.yaml",
        "qk-layernorm-lr-sweep/qk-layernorm.yaml",
        "plasticity-sgd.yaml",
        "plasticity-spectral.yaml",
        "bitnet-digits.yaml",
        "bitnet-digits-fp.yaml",
    } <= names


def test_the_readme_has_a_line_for_every_example() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    missing = [p.name for p in SPECS if p.name not in readme and p.parent.name not in readme]
    assert missing == []
