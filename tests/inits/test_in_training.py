"""The inits inside `train`: the loop hands LSUV its batch, μP its lr multipliers, and
weight_selection its teacher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from trainlib import parse_spec, resolve, train
from trainlib.components.inits_base import InitError

CPU = torch.device("cpu")


def spec(init: dict[str, Any], hidden: list[int], **changes: Any) -> Any:
    raw: dict[str, Any] = {
        "seed": 0,
        "data": {"name": "digits", "batch_size": 64},
        "model": {"name": "mlp", "hidden": hidden},
        "init": init,
        "optimizer": {"name": "sgd", "lr": 0.05},
        "train": {"steps": 12, "log_every": 4, "eval_every": 12, "device": "cpu"},
    }
    raw.update(changes)
    return parse_spec(raw)


def final_loss(init: dict[str, Any], hidden: list[int]) -> float:
    return train(spec(init, hidden), device=CPU).final_metrics["val_loss"]


@pytest.mark.parametrize("name", ["lsuv", "zero", "fixup", "kaiming_uniform", "trunc_normal"])
def test_runs_to_the_end(name: str) -> None:
    model = {"name": "mlp", "hidden": [32, 32], "residual": "fixup"}
    result = train(spec({"name": name}, [32, 32], model=model), device=CPU)
    assert result.status == "completed"
    assert all(v == v for v in result.final_metrics.values())  # no NaN


def test_mup_lr_multipliers_reach_the_optimizer() -> None:
    """The two lr tables differ only in the optimizer's groups: equal at the base width,
    different at twice the width."""

    def run(family: str, width: int) -> float:
        return final_loss({"name": "mup", "base_width": 32, "optimizer": family}, [width, width])

    assert run("adam", 32) == run("sgd", 32)
    assert run("adam", 64) != run("sgd", 64)


def test_weight_selection_reads_the_teacher_job(tmp_path: Path) -> None:
    teacher = spec({"name": "default"}, [32])
    train(teacher, out_dir=tmp_path, device=CPU)
    asked: list[str] = []

    def resolve_job(ref: str) -> tuple[dict[str, Any], Path]:
        asked.append(ref)
        return resolve(teacher), tmp_path / "checkpoint.safetensors"

    student = spec({"name": "weight_selection", "teacher_job": "job-7"}, [16])
    assert train(student, device=CPU, resolve_job=resolve_job).status == "completed"
    assert asked == ["job-7"]
    with pytest.raises(InitError):
        train(student, device=CPU)
