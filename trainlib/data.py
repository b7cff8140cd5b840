"""What a data set gives the loop: in-memory tensors and a seeded batch order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, get_args

import torch

Task = Literal["classification", "sequence", "regression"]
TASKS: frozenset[Task] = frozenset(get_args(Task))


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know of its data.

    classification: one label per sample, `num_classes` logits out.
    sequence: inputs are token ids (B, T) and labels one per position (B, T); the model gives
      (B, T, num_classes) logits and the loop flattens both for the loss.
    regression: float targets (B, num_classes) compared with a regression loss; no accuracy.
    `vocab_size` is set when inputs are token ids (long tensors) rather than real values.
    """

    input_shape: tuple[int, ...]
    num_classes: int
    task: Task = "classification"
    vocab_size: int | None = None


class TaskMaker(Protocol):
    """Builds task k of a sequence from the base data, on its device, the same every time."""

    def __call__(self, base: DataBundle, task: int) -> DataBundle: ...


@dataclass(frozen=True)
class TaskSequence:
    """A continual-learning sequence: task k trains on steps [k·S, (k+1)·S), S = steps_per_task.

    Tasks are rebuilt from the base on demand (no n_tasks copies in memory) and depend only on
    the task index, so the task of any step, a resumed one included, follows from the step.
    """

    base: DataBundle
    make: TaskMaker
    n_tasks: int
    steps_per_task: int

    @property
    def total_steps(self) -> int:
        return self.n_tasks * self.steps_per_task

    def task_at(self, step: int) -> int:
        """The task that step `step` (0-based, about to run) trains on."""
        return min(step // self.steps_per_task, self.n_tasks - 1)

    def ends_task(self, done: int) -> bool:
        """Whether the step that brought the count to `done` was its task's last."""
        return done % self.steps_per_task == 0

    def bundle(self, task: int) -> DataBundle:
        if not 0 <= task < self.n_tasks:
            raise IndexError(f"task {task} of a sequence of {self.n_tasks}")
        return replace(self.make(self.base, task), tasks=self)

    def to(self, device: torch.device) -> TaskSequence:
        return replace(self, base=self.base.to(device))


@dataclass(frozen=True)
class DataBundle:
    """Training and validation tensors; `tasks` is set for a task sequence, whose bundle is
    always one task's (the loop swaps in `for_task(k)` at each boundary)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    info: DataInfo
    batch_size: int
    tasks: TaskSequence | None = None

    def to(self, device: torch.device) -> DataBundle:
        return DataBundle(
            self.train_x.to(device),
            self.train_y.to(device),
            self.val_x.to(device),
            self.val_y.to(device),
            self.info,
            self.batch_size,
            None if self.tasks is None else self.tasks.to(device),
        )

    def for_task(self, task: int) -> DataBundle:
        if self.tasks is None:
            raise ValueError("not a task sequence")
        return self.tasks.bundle(task)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, -(-len(self.train_x) // self.batch_size))


class BatchOrder:
    """Reshuffles every epoch from its own generator, so the order is repeatable from the seed."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n = n
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._perm = torch.empty(0, dtype=torch.long)
        self._pos = n

    def next_indices(self) -> torch.Tensor:
        if self._pos >= self.n:
            self._perm = torch.randperm(self.n, generator=self.generator)
            self._pos = 0
        batch = self._perm[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Where the order stands: the generator, this epoch's permutation and the position."""
        return {"generator": self.generator.get_state(), "perm": self._perm, "pos": self._pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self._perm = state["perm"].to(torch.long)
        self._pos = int(state["pos"])

    def batches(
        self, data: DataBundle
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(inputs, labels, sample indices) forever, reshuffled each epoch."""
        device = data.train_x.device
        while True:
            idx = self.next_indices().to(device)
            yield data.train_x[idx], data.train_y[idx], idx
