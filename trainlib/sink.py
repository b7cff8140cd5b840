"""How the training loop reports: metrics in batches, progress, checkpoints, and stop requests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Metric:
    step: int
    name: str
    value: float
    wall_time: float


class Sink(Protocol):
    def on_metrics(self, points: Sequence[Metric]) -> None: ...

    def on_progress(self, step: int, total: int) -> None: ...

    def on_checkpoint(self, step: int, path: Path) -> None:
        """A full-state checkpoint (`state-<step>.safetensors`, resumable) was written at `path`.

        Called after every one (periodic, at a stop, at the end), once its file is complete; the
        weights-only `checkpoint.safetensors` beside it is up to date by then.
        """

    def should_stop(self) -> bool: ...


class NullSink:
    """Discards everything; never asks to stop."""

    def on_metrics(self, points: Sequence[Metric]) -> None:
        pass

    def on_progress(self, step: int, total: int) -> None:
        pass

    def on_checkpoint(self, step: int, path: Path) -> None:
        pass

    def should_stop(self) -> bool:
        return False


class CollectingSink(NullSink):
    """Keeps every metric in memory (local runs and tests)."""

    def __init__(self) -> None:
        self.metrics: list[Metric] = []
        self.checkpoints: list[tuple[int, Path]] = []

    def on_metrics(self, points: Sequence[Metric]) -> None:
        self.metrics.extend(points)

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.checkpoints.append((step, path))

    def series(self, name: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in self.metrics if m.name == name]
