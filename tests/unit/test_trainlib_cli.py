"""`python -m trainlib` as a user runs it: a subprocess on a spec file."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import yaml

from trainlib.registries import ALL

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "name": "cli-tiny",
    "seed": 0,
    "data": {"name": "digits", "batch_size": 64},
    "model": {"name": "mlp", "hidden": [16]},
    "optimizer": {"name": "adamw", "lr": 3e-3},
    "train": {"steps": 20, "log_every": 5, "eval_every": 10, "device": "cpu"},
}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "trainlib", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_writes_metrics_and_checkpoint(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out"

    proc = run_cli("run", str(spec_path), "--out", str(out))
    assert proc.returncode == 0, proc.stderr

    with (out / "metrics.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["step", "name", "value"]
    body = rows[1:]
    assert body
    names = {name for _, name, _ in body}
    assert {"loss", "accuracy", "lr", "val_loss", "val_accuracy"} <= names
    for step, _, value in body:
        assert 1 <= int(step) <= 20
        assert math.isfinite(float(value))
    assert sorted({int(s) for s, name, _ in body if name == "loss"}) == [5, 10, 15, 20]

    assert (out / "checkpoint.safetensors").is_file()
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "completed"
    assert summary["step"] == 20
    assert "val_accuracy" in summary
    assert "step 20/20" in proc.stderr  # progress lines


def test_bad_spec_exits_2_naming_the_field(tmp_path: Path) -> None:
    bad = {**TINY, "optimizer": {"name": "adamw", "lr": 0}, "model": {"name": "mlp", "foo": 1}}
    spec_path = tmp_path / "bad.yaml"
    spec_path.write_text(yaml.safe_dump(bad))
    out = tmp_path / "out"

    proc = run_cli("run", str(spec_path), "--out", str(out))
    assert proc.returncode == 2
    assert "optimizer.lr" in proc.stderr
    assert "model.foo" in proc.stderr
    assert not (out / "checkpoint.safetensors").exists()
    assert not (out / "metrics.csv").exists()


def test_unknown_component_exits_2_listing_valid_names(tmp_path: Path) -> None:
    spec_path = tmp_path / "bad.yaml"
    spec_path.write_text(yaml.safe_dump({**TINY, "optimizer": {"name": "no_such_optimizer"}}))
    proc = run_cli("run", str(spec_path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "no_such_optimizer" in proc.stderr
    for name in ALL["optimizer"].names():
        assert name in proc.stderr


def test_unreadable_spec_exits_2(tmp_path: Path) -> None:
    proc = run_cli("run", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "missing.yaml" in proc.stderr


def test_components_json_lists_every_kind_with_schemas() -> None:
    proc = run_cli("components", "--json")
    assert proc.returncode == 0, proc.stderr
    cat = json.loads(proc.stdout)
    assert set(cat) == set(ALL)
    for kind, registry in ALL.items():
        assert [e["name"] for e in cat[kind]] == registry.names()
    adamw = next(e for e in cat["optimizer"] if e["name"] == "adamw")
    assert adamw["summary"]
    assert {"lr", "betas", "weight_decay", "eps"} <= set(adamw["schema"]["properties"])


def test_components_plain_lists_names() -> None:
    proc = run_cli("components")
    assert proc.returncode == 0, proc.stderr
    for registry in ALL.values():
        for name in registry.names():
            assert name in proc.stdout
