"""`python -m trainlib run SPEC --out DIR --resume STATE`: a local run continues from a full state,
and its metrics.csv ends as the uninterrupted run's."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from trainlib.__main__ import main

SPEC = {
    "name": "cli-resume",
    "seed": 0,
    "data": {"name": "digits", "batch_size": 256},
    "model": {"name": "mlp", "hidden": [16], "dropout": 0.1},
    "optimizer": {"name": "adamw", "lr": 3e-3},
    "train": {"steps": 8, "log_every": 2, "eval_every": 4, "checkpoint_every": 3, "device": "cpu"},
}


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """The CLI's main() in this process (as `python -m trainlib run ...`): exit code, stderr."""
    code = main(["run", *args])
    return code, capsys.readouterr().err


def test_resume_rewrites_the_same_metrics_and_refuses_another_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "out"
    code, err = run_cli(capsys, str(spec), "--out", str(out))
    assert code == 0, err
    whole = (out / "metrics.csv").read_text()
    assert (out / "state-00000003.safetensors").is_file()  # kept: the last 3 of 3, 6, 8

    state = str(out / "state-00000003.safetensors")
    code, err = run_cli(capsys, str(spec), "--out", str(out), "--resume", state)
    assert code == 0, err
    assert "step 4/8" in err and "step 2/8" not in err  # only steps 4 to 8 ran
    assert (out / "metrics.csv").read_text() == whole

    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**SPEC, "seed": 1}))
    state = str(out / "state-00000008.safetensors")
    code, err = run_cli(capsys, str(other), "--out", str(tmp_path / "o"), "--resume", state)
    assert code == 2
    assert "resumes only the spec that wrote it" in err
