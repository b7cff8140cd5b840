"""GPU smoke tests: run on a machine with CUDA with `pytest -m gpu` (not part of `make test`).

They check what the CPU suite cannot: device placement, the fused and foreach CUDA kernels of
every optimizer, and that a CUDA run matches the CPU run closely.
"""

from __future__ import annotations

import math

import pytest

import trainlib.spec  # noqa: F401  (registers every component)
from trainlib import parse_spec, train
from trainlib.registries import OPTIMIZERS

# Collected only with `-m gpu`; on a machine without CUDA every test then fails loudly.
pytestmark = [pytest.mark.gpu]


def tiny(optimizer: dict, device: str) -> dict:
    return {
        "data": {"name": "digits", "batch_size": 64},
        "model": {"name": "mlp", "hidden": [64]},
        "optimizer": optimizer,
        "train": {"steps": 50, "log_every": 10, "eval_every": 50, "device": device},
    }


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_trains_on_cuda(name: str) -> None:
    result = train(parse_spec(tiny({"name": name}, "cuda")))
    assert result.status == "completed"
    assert math.isfinite(result.final_metrics["loss"])


def test_cuda_run_matches_cpu_run() -> None:
    spec = {"name": "adamw", "lr": 1e-3, "foreach": True}
    cpu = train(parse_spec(tiny(spec, "cpu"))).final_metrics
    gpu = train(parse_spec(tiny(spec, "cuda"))).final_metrics
    assert abs(cpu["val_loss"] - gpu["val_loss"]) < 0.05
