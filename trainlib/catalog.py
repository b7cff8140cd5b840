"""The published component catalog: every registered entry with its schema and paper."""

from __future__ import annotations

from typing import Any

import trainlib.components  # noqa: F401  (registers the built-in components)
from trainlib.registries import ALL


def catalog() -> dict[str, list[dict[str, Any]]]:
    return {kind: [e.describe() for e in registry.entries()] for kind, registry in ALL.items()}
