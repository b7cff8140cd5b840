"""The regularizer stack: hook order, logging, averaging after reparametrizations."""

from __future__ import annotations

import math

from tests.regularizers.helpers import minimal_job
from trainlib import parse_spec, train


def tiny(regularizers: list[dict]) -> dict:
    return minimal_job(regularizers, steps=30)


def test_ema_listed_before_a_reparametrization_averages_the_reparametrized_model() -> None:
    spec = tiny([{"name": "ema", "decay": 0.9}, {"name": "weight_standardization"}])
    result = train(parse_spec(spec))
    assert result.status == "completed"
    assert math.isfinite(result.final_metrics["ema/val_loss"])


def test_the_same_regularizer_twice_logs_twice() -> None:
    spec = tiny([{"name": "l2", "strength": 1e-4}, {"name": "l2", "strength": 1e-2}])
    metrics = train(parse_spec(spec)).final_metrics
    assert metrics["reg/l2#2"] > metrics["reg/l2"] > 0
