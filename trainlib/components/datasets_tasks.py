"""Task sequences for continual learning: the same base data, a new task at fixed steps."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator, model_validator

from trainlib.components.datasets_common import TASK_STREAM, stream
from trainlib.data import DataBundle, Task, TaskSequence
from trainlib.errors import DataError
from trainlib.registries import DATASETS
from trainlib.registry import ComponentSettings


def _digits() -> ComponentSettings:
    return DATASETS.settings_for({"name": "digits"})


class TaskSequenceSettings(BaseModel):
    """`n_tasks` tasks made from one base classification set, each trained for a fixed budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: SerializeAsAny[ComponentSettings] = Field(
        default_factory=_digits, description="the base data set's spec (a classification set)"
    )
    kind: Literal["permuted_input", "random_labels"] = Field(
        "permuted_input",
        description="permuted_input: a new fixed permutation of the input features per task "
        "(Permuted MNIST); random_labels: new uniformly random labels per task",
    )
    n_tasks: int = Field(10, ge=1, le=100_000)
    steps_per_task: int | None = Field(None, ge=1, le=10_000_000)
    epochs_per_task: int | None = Field(
        None, ge=1, le=100_000, description="or: passes over the training set (default 1)"
    )
    train_subset: int | None = Field(
        None, ge=1, description="keep only the first N training samples (random-label tasks)"
    )

    @field_validator("base", mode="before")
    @classmethod
    def _base_is_a_data_set(cls, value: Any) -> ComponentSettings:
        try:
            base = DATASETS.settings_for(value)
        except KeyError as exc:  # an unknown name: pydantic reports ValueErrors only
            raise ValueError(str(exc.args[0])) from None
        if base.name == "task_sequence":
            raise ValueError("the base of a task sequence cannot be another task sequence")
        return base

    @model_validator(mode="after")
    def _one_budget(self) -> TaskSequenceSettings:
        if self.steps_per_task is not None and self.epochs_per_task is not None:
            raise ValueError("give steps_per_task or epochs_per_task, not both")
        return self

    def known_task(self) -> Task | None:
        return "classification"  # its base must be a classification set


def _task_generator(seeds: torch.Tensor, task: int) -> torch.Generator:
    """Task k's own stream: its draws are made when the task starts, not n_tasks at once."""
    return torch.Generator().manual_seed(int(seeds[task]))


@dataclass(frozen=True)
class PermutedInputs:
    """Task k permutes the flattened input features at random, training and validation alike.

    "Loss of Plasticity in Deep Continual Learning" (Dohare et al., 2024), Online Permuted MNIST:
    every task, the first included, has its own uniformly random permutation.
    """

    seeds: torch.Tensor  # (n_tasks,): one seed per task

    def __call__(self, base: DataBundle, task: int) -> DataBundle:
        features = base.train_x[0].numel()
        perm = torch.randperm(features, generator=_task_generator(self.seeds, task))
        perm = perm.to(base.train_x.device)

        def permute(x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, perm].view_as(x)

        return DataBundle(
            permute(base.train_x),
            base.train_y,
            permute(base.val_x),
            base.val_y,
            base.info,
            base.batch_size,
        )


@dataclass(frozen=True)
class RandomLabels:
    """Task k gives the training inputs new labels, drawn uniformly at random.

    "Maintaining Plasticity in Continual Learning via Regenerative Regularization" (Kumar et
    al., 2023) and "Learning Continually by Spectral Regularization" (Lewandowski et al., 2024):
    random labels have nothing to generalise to, so plasticity is how well a task is fitted,
    and the validation set is the training set with this task's labels.
    """

    seeds: torch.Tensor  # (n_tasks,): one seed per task

    def __call__(self, base: DataBundle, task: int) -> DataBundle:
        shape = (len(base.train_x),)
        y = torch.randint(
            0, base.info.num_classes, shape, generator=_task_generator(self.seeds, task)
        )
        y = y.to(base.train_x.device)
        return DataBundle(base.train_x, y, base.train_x, y, base.info, base.batch_size)


@DATASETS.register(
    "task_sequence",
    settings=TaskSequenceSettings,
    summary="permuted-input or random-label task sequences on a base set (loss of plasticity)",
    paper="Loss of Plasticity in Deep Continual Learning (Dohare et al., 2024); Maintaining "
    "Plasticity in Continual Learning via Regenerative Regularization (Kumar et al., 2023)",
)
def build_task_sequence(s: TaskSequenceSettings, seed: int) -> DataBundle:
    base: DataBundle = DATASETS.build(s.base, seed=seed)
    if base.info.task != "classification":
        raise DataError(f"a task sequence needs a classification base, not {base.info.task}")
    if s.train_subset is not None:
        base = replace(
            base, train_x=base.train_x[: s.train_subset], train_y=base.train_y[: s.train_subset]
        )
    seeds = torch.randint(0, 2**62, (s.n_tasks,), generator=stream(seed, TASK_STREAM))
    make = PermutedInputs(seeds) if s.kind == "permuted_input" else RandomLabels(seeds)
    steps = s.steps_per_task or (s.epochs_per_task or 1) * base.steps_per_epoch
    return TaskSequence(base, make, s.n_tasks, steps).bundle(0)
