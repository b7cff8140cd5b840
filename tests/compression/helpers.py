"""A tiny digits job for the compression and precision tests."""

from __future__ import annotations

import math
from typing import Any

from trainlib import CollectingSink, TrainResult, parse_spec, train


def digits_job(steps: int = 60, **train_options: Any) -> dict[str, Any]:
    """Digits, a 32-unit MLP and AdamW on the CPU, with the given `train:` options."""
    return {
        "data": {"name": "digits", "batch_size": 64},
        "model": {"name": "mlp", "hidden": [32]},
        "optimizer": {"name": "adamw", "lr": 3e-3},
        "train": {"steps": steps, "log_every": 10, "eval_every": steps, "device": "cpu"}
        | train_options,
    }


def run(raw: dict[str, Any]) -> tuple[TrainResult, CollectingSink]:
    sink = CollectingSink()
    result = train(parse_spec(raw), sink)
    assert result.status == "completed"
    assert all(math.isfinite(v) for v in result.final_metrics.values())
    return result, sink
