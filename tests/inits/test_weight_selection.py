"""weight_selection (Xu et al., 2024): evenly spaced slices of a larger teacher's tensors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.inits.helpers import plain_mlp
from trainlib.checkpoint import save_weights
from trainlib.components.inits_base import InitContext, InitError, apply_init
from trainlib.components.inits_selection import uniform_indices


def teacher_checkpoint(tmp_path: Path, widths: list[int]) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(7)
    teacher = plain_mlp(12, widths, 5)
    state = {k: v.clone() for k, v in teacher.state_dict().items()}
    return save_weights(tmp_path / "checkpoint.safetensors", state, {"step": "100"}), state


def context(path: Path, job: str = "teacher-1") -> InitContext:
    def resolve_job(ref: str) -> tuple[dict[str, Any], Path]:
        assert ref == job
        return {"model": {"name": "mlp"}}, path

    return InitContext(resolve_job=resolve_job)


SPEC = {"name": "weight_selection", "teacher_job": "teacher-1", "skip": ["2."]}  # 2: the head


def test_uniform_indices_worked_examples() -> None:
    assert torch.equal(uniform_indices(384, 192), torch.arange(0, 384, 2))
    assert uniform_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert uniform_indices(7, 7).tolist() == list(range(7))


def test_student_tensors_are_evenly_spaced_slices_of_the_teacher(tmp_path: Path) -> None:
    path, teacher = teacher_checkpoint(tmp_path, [40])  # 12 -> 40 -> 5
    torch.manual_seed(0)
    student = plain_mlp(12, [10], 5)  # 12 -> 10 -> 5
    head_before = student[2].weight.clone()
    apply_init(SPEC, student, context(path))
    rows = torch.arange(0, 40, 4)  # 40 % 10 == 0: every 4th neuron
    assert torch.equal(student[0].weight, teacher["0.weight"][rows])
    assert torch.equal(student[0].bias, teacher["0.bias"][rows])
    assert torch.equal(student[2].weight, head_before)  # skipped: keeps its own init


def test_uneven_sizes_use_rounded_linspace_on_every_dimension(tmp_path: Path) -> None:
    path, teacher = teacher_checkpoint(tmp_path, [10, 9])  # 12 -> 10 -> 9 -> 5
    student = plain_mlp(12, [4, 5], 5)
    apply_init(SPEC | {"skip": ["4."]}, student, context(path))
    first = torch.tensor([0, 3, 6, 9])
    second = torch.linspace(0, 8, 5).round().long()
    assert torch.equal(student[0].weight, teacher["0.weight"][first])
    # the same neurons of layer 0 are the inputs kept by layer 2
    assert torch.equal(student[2].weight, teacher["2.weight"][second][:, first])


def test_same_shape_is_an_exact_copy(tmp_path: Path) -> None:
    path, teacher = teacher_checkpoint(tmp_path, [16])
    student = plain_mlp(12, [16], 5)
    apply_init(SPEC | {"skip": []}, student, context(path))
    for key, value in student.state_dict().items():
        assert torch.equal(value, teacher[key])


def test_a_wider_or_deeper_student_is_refused(tmp_path: Path) -> None:
    path, _ = teacher_checkpoint(tmp_path, [8])
    with pytest.raises(InitError, match="cannot be selected"):
        apply_init(SPEC, plain_mlp(12, [16], 5), context(path))
    with pytest.raises(InitError, match="has no"):
        apply_init(SPEC, plain_mlp(12, [8, 8], 5), context(path))


def test_needs_the_service() -> None:
    with pytest.raises(InitError, match="needs the service"):
        apply_init(SPEC, nn.Sequential(nn.Linear(2, 2)), InitContext())
