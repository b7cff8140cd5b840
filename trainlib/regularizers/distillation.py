"""Distillation: `kd` (a finished job of the team as teacher) and `ps_kd` (the model's own
predictions from the previous epoch as soft targets).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from trainlib.checkpoint import load_weights
from trainlib.data import Task
from trainlib.errors import DataError
from trainlib.registries import MODELS, REGULARIZERS
from trainlib.regularizers.base import (
    PenaltyContext,
    Regularizer,
    RegularizerSettings,
    SetupContext,
)


class TeacherError(DataError):
    """The teacher job cannot teach this job (a problem with the job's inputs, not the service)."""


class KdSettings(RegularizerSettings):
    """Loss = base loss + alpha·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)).

    The base loss keeps weight 1. Hinton's (1 − α_H)·CE + α_H·T²·KL is (1 − α_H) times this loss
    with alpha = α_H / (1 − α_H): the default alpha = 9 is the common α_H = 0.9 (with SGD, scale
    the learning rate by 1 − α_H to match Hinton's step sizes exactly; Adam-type optimizers are
    indifferent to the factor).
    """

    teacher_job: str = Field(
        ..., min_length=1, max_length=200, description="id of a finished job of the team"
    )
    temperature: float = Field(4.0, gt=0, le=1000, description="T, applied to both logits")
    alpha: float = Field(
        9.0, ge=0, le=10_000, description="weight of T²·KL beside the base loss (weight 1)"
    )
    tasks: ClassVar[frozenset[Task]] = frozenset({"classification", "sequence"})  # class logits


def kd_term(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float, alpha: float
) -> torch.Tensor:
    """alpha·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)): KL summed over classes, mean over samples."""
    classes = student.shape[-1]
    dtype = torch.promote_types(student.dtype, torch.float32)  # half logits: softmax in fp32
    log_student = F.log_softmax(student.reshape(-1, classes).to(dtype) / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher.reshape(-1, classes).to(dtype) / temperature, dim=-1)
    kl = F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean")
    return alpha * temperature**2 * kl


class Kd(Regularizer):
    """Knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
    Network", 2015): the teacher is another job's final checkpoint, rebuilt from its resolved spec
    for this job's data (eval mode, no gradients), fed the same (transformed) inputs as the
    student. The T² keeps the soft term's gradients independent of T (they scale as 1/T²).
    """

    def __init__(self, s: KdSettings, setup: SetupContext) -> None:
        self.s = s
        self.setup = setup
        self.teacher: nn.Module | None = None
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def configure_model(self, model: nn.Module) -> None:
        if self.setup.resolve_job is None:
            raise TeacherError("kd needs the service: its teacher is another job's checkpoint")
        job = self.s.teacher_job
        spec, checkpoint = self.setup.resolve_job(job)
        info = self.setup.info
        teacher: nn.Module = MODELS.build(MODELS.settings_for(spec["model"]), info)
        _load_teacher(teacher, load_weights(checkpoint), job)
        reference = next(model.parameters())
        teacher.to(device=reference.device, dtype=reference.dtype).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        zeros = torch.zeros((1, *info.input_shape), device=reference.device, dtype=reference.dtype)
        try:
            with torch.no_grad():
                probe = teacher(zeros)
        except RuntimeError as exc:
            raise TeacherError(
                f"kd: teacher job {job} cannot read this job's inputs {info.input_shape}: {exc}"
            ) from exc
        if probe.shape[-1] != info.num_classes:
            raise TeacherError(
                f"kd: teacher job {job} outputs {probe.shape[-1]} values per sample, this job "
                f"has {info.num_classes} classes"
            )
        self.teacher = teacher

    @torch.no_grad()
    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        assert self.teacher is not None
        # step strategies evaluate the loss more than once on the same batch: one teacher pass
        if self._last is None or self._last[0] is not x:
            self._last = (x, self.teacher(x))
        return self._last[1]

    def penalty(self, ctx: PenaltyContext) -> torch.Tensor:
        teacher = self.teacher_logits(ctx.x).to(ctx.logits.dtype)
        return kd_term(ctx.logits, teacher, self.s.temperature, self.s.alpha)


def _load_teacher(teacher: nn.Module, weights: dict[str, torch.Tensor], job: str) -> None:
    expected = teacher.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise TeacherError(
            f"kd: teacher job {job}'s checkpoint does not fit its model spec (missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}); a teacher trained with a "
            "reparametrization cannot be rebuilt as a plain model"
        )
    wrong = [k for k, v in expected.items() if v.shape != weights[k].shape]
    if wrong:
        shapes = ", ".join(
            f"{k}: {tuple(weights[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong[:5]
        )
        raise TeacherError(
            f"kd: teacher job {job} does not fit this job's data (its input size or number of "
            f"classes differs; checkpoint vs this data: {shapes})"
        )
    teacher.load_state_dict(weights)


class PsKdSettings(RegularizerSettings):
    """Targets (1 − α_e)·e_y + α_e·p_prev, with α_e = alpha_T·(e + 1)/E."""

    soft_targets: ClassVar[bool] = True
    tasks: ClassVar[frozenset[Task]] = frozenset({"classification"})  # one target row per sample

    alpha_T: float = Field(0.8, ge=0, le=1, description="α at the last epoch")


class PsKd(Regularizer):
    """Progressive self-knowledge distillation (Kim, Ji, Yoon & Hwang, "Self-Knowledge
    Distillation with Progressive Refinement of Targets", 2021).

    Soft target of sample i in epoch e (0-based, E epochs in the run, the last possibly partial):
    ỹ_i = (1 − α_e)·e_{y_i} + α_e·p_prev(i), α_e = alpha_T·(e + 1)/E, where p_prev(i) is the
    softmax the model gave sample i on its last training pass (train mode, transformed input),
    kept in an N × C table and overwritten as soon as the step's first pass has computed it. A
    sample not yet seen uses its label, so the first epoch is plain cross-entropy. The loss is the
    job's loss with these soft targets (cross_entropy: −Σ_c ỹ_c log softmax(z)_c, the paper's).
    """

    def __init__(self, s: PsKdSettings, setup: SetupContext) -> None:
        self.alpha_T = s.alpha_T
        self.steps_per_epoch = setup.steps_per_epoch
        self.epochs = max(1, math.ceil(setup.total_steps / setup.steps_per_epoch))
        self.size = (setup.train_size, setup.info.num_classes)
        self.table = torch.zeros(self.size)
        self.seen = torch.zeros(self.size[0], dtype=torch.bool)
        self._recorded_step = -1

    def alpha(self, step: int) -> float:
        epoch = step // self.steps_per_epoch
        return self.alpha_T * min(epoch + 1, self.epochs) / self.epochs

    def configure_model(self, model: nn.Module) -> None:
        device = next(model.parameters()).device
        self.table = self.table.to(device)
        self.seen = self.seen.to(device)

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = x.dtype if x.is_floating_point() else torch.float32
        labels = y.to(dtype) if y.is_floating_point() else F.one_hot(y, self.size[1]).to(dtype)
        previous = torch.where(self.seen[indices, None], self.table[indices].to(dtype), labels)
        alpha = self.alpha(step)
        return x, (1 - alpha) * labels + alpha * previous

    def penalty(self, ctx: PenaltyContext) -> None:
        # record on the step's first pass only (step strategies evaluate perturbed weights later)
        if ctx.step != self._recorded_step:
            self._recorded_step = ctx.step
            with torch.no_grad():
                probs = torch.softmax(ctx.logits.detach().float(), dim=-1)
                self.table[ctx.indices] = probs.to(self.table.dtype)
                self.seen[ctx.indices] = True
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"table": self.table.clone(), "seen": self.seen.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.table.copy_(state["table"])
        self.seen.copy_(state["seen"])
        self._recorded_step = -1


@REGULARIZERS.register(
    "kd",
    settings=KdSettings,
    summary="knowledge distillation from another job's checkpoint: + α·T²·KL(teacher ‖ student)",
    paper="Distilling the Knowledge in a Neural Network (Hinton, Vinyals & Dean, 2015)",
)
def build_kd(s: KdSettings, setup: SetupContext) -> Regularizer:
    return Kd(s, setup)


@REGULARIZERS.register(
    "ps_kd",
    settings=PsKdSettings,
    summary="progressive self-distillation: last epoch's own predictions blended into the targets",
    paper="Self-Knowledge Distillation with Progressive Refinement of Targets "
    "(Kim, Ji, Yoon & Hwang, 2021)",
)
def build_ps_kd(s: PsKdSettings, setup: SetupContext) -> Regularizer:
    return PsKd(s, setup)
