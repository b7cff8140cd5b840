"""What the trainer process reports back to its supervisor, as a small JSON file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

LEASE_LOST_EXIT = 3  # the trainer found its attempt stale and stopped writing


@dataclass(frozen=True)
class Outcome:
    status: Literal["completed", "stopped", "failed"]
    step: int = 0
    reason: str | None = None
    message: str | None = None

    def write(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> Outcome | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
