"""The live progress bar (rich): step/total, loss, val_accuracy and ETA, remote or local."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from client.models import Event

if TYPE_CHECKING:  # importing trainlib pulls in torch: only `regimen run` needs it
    from trainlib.sink import Metric


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


class JobProgress:
    """One bar for one job; `update` with each metrics batch, `note` for status changes."""

    def __init__(self, console: Console, title: str, total: int | None) -> None:
        self.console = console
        self._progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("val_acc {task.fields[val_accuracy]}"),
            TimeRemainingColumn(),
            console=console,
        )
        self._task: TaskID = self._progress.add_task(title, total=total, loss="-", val_accuracy="-")
        self._latest: dict[str, float] = {}

    def __enter__(self) -> JobProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def update(self, step: int, total: int | None, values: dict[str, float]) -> None:
        self._latest.update(values)
        self._progress.update(
            self._task,
            completed=step,
            total=total,
            loss=_fmt(self._latest.get("loss")),
            val_accuracy=_fmt(self._latest.get("val_accuracy")),
        )

    def on_event(self, event: Event) -> None:
        if event.event == "metrics":
            self.update(event.data["step"], event.data.get("total"), event.latest_values())
        elif event.event == "status":
            self.note(event)

    def note(self, event: Event) -> None:
        detail = event.data.get("detail") or {}
        extra = ": ".join(str(detail[k]) for k in ("reason", "message") if detail.get(k))
        self._progress.console.print(
            f"{event.status} (attempt {event.data.get('attempt')})" + (f" {extra}" if extra else "")
        )


class ProgressSink:
    """A trainlib Sink that drives a JobProgress for `regimen run` (no service)."""

    def __init__(self, bar: JobProgress) -> None:
        self._bar = bar
        self._pending: dict[str, float] = {}

    def on_metrics(self, points: Sequence[Metric]) -> None:
        self._pending.update({p.name: p.value for p in points})

    def on_progress(self, step: int, total: int) -> None:
        self._bar.update(step, total, self._pending)
        self._pending = {}

    def on_checkpoint(self, step: int, path: Path) -> None:
        pass

    def should_stop(self) -> bool:
        return False
