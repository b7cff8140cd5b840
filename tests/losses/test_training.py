"""Every loss trains the minimal job through `trainlib.train`, with hard labels and with mixup's
soft targets."""

from __future__ import annotations

import math
from typing import Any

import pytest

import trainlib
from trainlib.registries import LOSSES

MINIMAL: dict[str, Any] = {
    "data": {"name": "digits", "batch_size": 64},
    "model": {"name": "mlp", "hidden": [32]},
    "optimizer": {"name": "adamw", "lr": 3e-3},
    "train": {"steps": 40, "log_every": 10, "eval_every": 40, "device": "cpu"},
}
VARIANTS = [
    {"name": "focal", "form": "sigmoid", "alpha": 0.25},
    {"name": "poly1_focal", "form": "sigmoid"},
    {"name": "gce", "k": 0.5, "truncate_after": 20},
    {"name": "class_weighted", "scheme": "inverse_frequency"},
    {"name": "logit_adjusted", "class_priors": [0.1] * 10},
    {"name": "stablemax", "float64": False},
]


def train(loss: dict[str, Any], **extra: Any) -> trainlib.TrainResult:
    spec = trainlib.parse_spec({**MINIMAL, "loss": loss, **extra})
    return trainlib.train(spec)


def check(result: trainlib.TrainResult) -> None:
    assert result.status == "completed"
    assert result.step == 40
    for key in ("loss", "val_loss", "val_accuracy"):
        assert math.isfinite(result.final_metrics[key]), key


@pytest.mark.parametrize(
    "loss",
    [{"name": name} for name in LOSSES.names()] + VARIANTS,
    ids=lambda loss: "-".join(str(v) for k, v in loss.items() if k != "class_priors"),
)
def test_trains_the_minimal_job(loss: dict[str, Any]) -> None:
    result = train(loss)
    check(result)
    if loss["name"] != "mae":  # MAE's gradient vanishes at small p_y: slow to start (by design)
        assert result.final_metrics["val_accuracy"] > 0.3


@pytest.mark.parametrize("name", LOSSES.names())
def test_trains_with_mixup_soft_targets(name: str) -> None:
    check(train({"name": name}, regularizers=[{"name": "mixup"}]))
