"""`weight_selection`: initialize from a larger finished job of the team (Xu et al.,
"Initializing Models with Larger Ones", ICLR 2024).

For every student tensor whose name contains none of `skip` (the classifier head stays randomly
initialized), take the teacher tensor of the same name and keep evenly spaced elements along
each dimension: indices 0, t/s, 2t/s, ... when s divides t, else round(linspace(0, t − 1, s)).
The rule depends only on (t, s), so connected layers select the same neurons. Layer selection
is by name: a shallower student takes the teacher's first blocks.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainlib.checkpoint import load_weights
from trainlib.components.inits_base import InitContext, InitError
from trainlib.registries import INITS


class WeightSelectionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    teacher_job: str = Field(
        ..., min_length=1, max_length=200, description="id of a finished, larger job of the team"
    )
    skip: list[str] = Field(
        default_factory=lambda: ["head"],
        max_length=20,
        description="tensors whose name contains one of these keep their own init",
    )


def uniform_indices(teacher: int, student: int) -> torch.Tensor:
    """`student` evenly spaced indices into a dimension of size `teacher`."""
    if student > teacher:
        raise InitError(f"a dimension of {student} cannot be selected from {teacher}")
    if teacher % student == 0:
        return torch.arange(0, teacher, teacher // student)
    return torch.linspace(0, teacher - 1, student).round().long()


def select(teacher: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The sub-tensor teacher[idx_0][:, idx_1]... of the student's shape."""
    if teacher.ndim != len(shape):
        raise InitError(f"tensor of shape {tuple(teacher.shape)} cannot give shape {tuple(shape)}")
    out = teacher
    for dim, size in enumerate(shape):
        out = out.index_select(dim, uniform_indices(out.shape[dim], size))
    return out


def select_weights(
    model: nn.Module, teacher: dict[str, torch.Tensor], skip: list[str]
) -> list[str]:
    """Copy the selection into `model`'s state in place; returns the names copied."""
    state = model.state_dict()
    missing = [k for k in state if k not in teacher and not any(s in k for s in skip)]
    if missing:
        raise InitError(f"the teacher checkpoint has no {', '.join(missing[:5])}")
    copied = []
    with torch.no_grad():
        for name, tensor in state.items():
            if any(s in name for s in skip):
                continue
            tensor.copy_(select(teacher[name], tensor.shape).to(tensor.dtype))
            copied.append(name)
    return copied


@INITS.register(
    "weight_selection",
    settings=WeightSelectionSettings,
    summary="evenly spaced neurons of each layer of a larger finished job's weights",
    paper="Initializing Models with Larger Ones (Xu et al., 2024)",
)
def build_weight_selection(
    s: WeightSelectionSettings, model: nn.Module, ctx: InitContext | None = None
) -> None:
    if ctx is None or ctx.resolve_job is None:
        raise InitError("weight_selection needs the service: its teacher is another job")
    _spec, checkpoint = ctx.resolve_job(s.teacher_job)
    select_weights(model, load_weights(checkpoint), s.skip)
