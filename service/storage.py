"""Where a job's artifacts (checkpoints, logs) live: one folder per job under the artifact dir."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


@dataclass(frozen=True)
class ArtifactStore:
    root: Path

    def job_dir(self, job_id: uuid.UUID) -> Path:
        return self.root / str(job_id)

    def path(self, job_id: uuid.UUID, name: str) -> Path:
        """An artifact's path; the name is checked so it can never leave the job's folder."""
        if not _SAFE_NAME.match(name):
            raise ValueError(f"invalid artifact name {name!r}")
        return self.job_dir(job_id) / name

    def list(self, job_id: uuid.UUID) -> list[Path]:
        folder = self.job_dir(job_id)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
