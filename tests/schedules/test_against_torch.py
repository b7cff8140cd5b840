"""Schedules that torch also has: the same lr (and momentum) at every step."""

from __future__ import annotations

import pytest
import torch.optim.lr_scheduler as lr_scheduler

from tests.schedules.helpers import BASE_LR, ours, torchs


def assert_same(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> None:
    assert len(a) == len(b)
    for step, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x == pytest.approx(y, rel=1e-9, abs=1e-15), step


def test_step() -> None:
    a = ours({"name": "step", "step_size": 7, "gamma": 0.5}, 40)
    assert_same(a, torchs(lambda o: lr_scheduler.StepLR(o, 7, 0.5), 40))


def test_multistep() -> None:
    a = ours({"name": "multistep", "milestones": [5, 12, 30], "gamma": 0.3}, 40)
    assert_same(a, torchs(lambda o: lr_scheduler.MultiStepLR(o, [5, 12, 30], 0.3), 40))


def test_exponential() -> None:
    a = ours({"name": "exponential", "gamma": 0.9}, 30)
    assert_same(a, torchs(lambda o: lr_scheduler.ExponentialLR(o, 0.9), 30))


def test_cosine_restarts_with_growing_cycles() -> None:
    """3 cycles, each twice as long: 10 + 20 + 40 = 70 steps, restarts at 10 and 30."""
    spec = {"name": "cosine", "cycles": 3, "cycle_mult": 2, "min_lr_ratio": 0.1}
    expected = torchs(
        lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, 10, 2, eta_min=0.1 * BASE_LR), 70
    )
    assert_same(ours(spec, 70), expected)


def test_cosine_equal_cycles() -> None:
    spec = {"name": "cosine", "cycles": 4, "min_lr_ratio": 0.0}
    expected = torchs(lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, 15, 1), 60)
    assert_same(ours(spec, 60), expected)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("three_phase", [False, True])
def test_one_cycle_lr_and_momentum(kind: str, anneal: str, three_phase: bool) -> None:
    total = 100
    spec = {"name": "one_cycle", "anneal": anneal, "three_phase": three_phase}
    expected = torchs(
        lambda o: lr_scheduler.OneCycleLR(
            o, BASE_LR, total_steps=total, anneal_strategy=anneal, three_phase=three_phase
        ),
        total,
        kind,
    )
    assert_same(ours(spec, total, kind), expected)


def test_one_cycle_without_momentum_cycling_leaves_momentum() -> None:
    trace = ours({"name": "one_cycle", "cycle_momentum": False}, 50)
    assert {m for _, m in trace} == {0.9}
