"""Two data-parallel processes (torchrun, gloo on the CPU) follow the one-process loss curve.

Each process trains its half of the same global batch; DDP averages the gradients, so the run
matches a single process with that global batch up to float rounding. Only rank 0 reports.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC = {
    "name": "ddp-vs-one",
    "seed": 3,
    # 1438 training samples: 22 full batches of 64 and one of 30, all split evenly in two
    "data": {"name": "digits", "batch_size": 64, "val_fraction": 0.2},
    "model": {"name": "mlp", "hidden": [32]},
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "train": {"steps": 30, "log_every": 1, "eval_every": 10, "checkpoint_every": 15},
}


def run(args: list[str], out: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, *args, "run", str(out.parent / "spec.yaml"), "--out", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def series(out: Path, name: str) -> list[float]:
    with (out / "metrics.csv").open() as fh:
        return [float(row["value"]) for row in csv.DictReader(fh) if row["name"] == name]


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    one, two = tmp_path / "one", tmp_path / "two"
    run(["-m", "trainlib"], one)
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    run([*torchrun, "-m", "trainlib"], two)

    loss_one, loss_two = series(one, "loss"), series(two, "loss")
    assert len(loss_one) == len(loss_two) == 30  # rank 0 alone wrote every step, once
    assert loss_two == pytest.approx(loss_one, rel=1e-4)
    assert loss_one[-1] < loss_one[0] * 0.5  # it trained: a curve worth comparing
    assert series(two, "val_accuracy") == pytest.approx(series(one, "val_accuracy"), abs=1e-3)
    states = sorted(p.name for p in two.glob("state-*.safetensors"))
    assert states == ["state-00000015.safetensors", "state-00000030.safetensors"]
