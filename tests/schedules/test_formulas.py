"""Schedules against their papers' formulas at known steps; warmup shared by all."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from tests.schedules.helpers import BASE_LR, lrs, ours
from trainlib.registries import SCHEDULES
from trainlib.spec import SpecError, parse_spec

EVERY: dict[str, dict[str, Any]] = {
    "constant": {},
    "step": {"step_size": 5},
    "multistep": {"milestones": [3, 9]},
    "exponential": {"gamma": 0.9},
    "cosine": {"cycles": 2},
    "linear_decay": {},
    "one_cycle": {},
    "wsd": {},
}


def test_every_registered_schedule_is_covered() -> None:
    assert set(SCHEDULES.names()) == set(EVERY)


@pytest.mark.parametrize("name", sorted(EVERY))
def test_every_schedule_warms_up_linearly_then_starts_its_own_curve(name: str) -> None:
    warmup, total = 8, 60
    with_warmup = lrs({"name": name, "warmup_steps": warmup, **EVERY[name]}, total)
    for t in range(warmup):
        assert with_warmup[t] == pytest.approx((t + 1) / warmup)
    if name != "wsd":  # the others run their whole curve over the steps after the warmup
        alone = lrs({"name": name, **EVERY[name]}, total - warmup)
        assert with_warmup[warmup:] == pytest.approx(alone)


def test_linear_decay_reaches_zero_at_the_end() -> None:
    """Defazio et al.: η_t = η·(1 − t/T) after warmup W: η·(1 − (t − W)/(T − W))."""
    w, total = 10, 50
    trace = lrs({"name": "linear_decay", "warmup_steps": w}, total)
    for t in range(w, total + 1):
        assert trace[t] == pytest.approx(1 - (t - w) / (total - w))
    assert trace[total] == 0.0
    floor = lrs({"name": "linear_decay", "min_lr_ratio": 0.2}, 40)
    assert floor[20] == pytest.approx(0.2 + 0.8 * 0.5)
    assert floor[40] == pytest.approx(0.2)


def wsd(t: int, total: int, warmup: int, cool: float, shape: str, end: float) -> float:
    """Hägele et al.'s wsd_schedule, with this library's (t+1)/W warmup."""
    n_cool = math.floor(cool * total)
    t_c = total - n_cool
    if t < warmup:
        return (t + 1) / warmup
    if t < t_c:
        return 1.0
    if t >= total:
        return end
    u = (t - t_c) / n_cool
    return end + (1 - end) * (1 - (math.sqrt(u) if shape == "sqrt" else u))


@pytest.mark.parametrize("shape", ["linear", "sqrt"])
def test_wsd_phases(shape: str) -> None:
    total, warmup = 100, 10
    spec = {"name": "wsd", "warmup_steps": warmup, "shape": shape, "final_lr_ratio": 0.1}
    trace = lrs(spec, total)
    for t, value in enumerate(trace):
        assert value == pytest.approx(wsd(t, total, warmup, 0.2, shape, 0.1)), t
    assert trace[warmup] == 1.0  # f(W) = 1
    assert trace[80] == 1.0  # continuous at t_c = T − ⌊0.2·T⌋
    assert trace[total] == pytest.approx(0.1)  # f(T) = f_end


def test_wsd_sqrt_cooldown_is_below_linear() -> None:
    linear = lrs({"name": "wsd", "cooldown_fraction": 0.4, "shape": "linear"}, 100)
    sqrt = lrs({"name": "wsd", "cooldown_fraction": 0.4, "shape": "sqrt"}, 100)
    assert linear[70] == pytest.approx(0.75)  # u = 0.25
    assert sqrt[70] == pytest.approx(0.5)
    assert all(s < lin for s, lin in zip(sqrt[61:100], linear[61:100], strict=True))


def test_one_cycle_worked_example() -> None:
    """T = 100, defaults: the table of the reference formulas."""
    trace = ours({"name": "one_cycle"}, 100)
    table = {0: (0.04, 0.95), 15: (0.546, 0.897), 29: (1.0, 0.85), 64: (0.5, 0.90)}
    for step, (lr, momentum) in table.items():
        assert trace[step][0] / BASE_LR == pytest.approx(lr, abs=5e-3), step
        assert trace[step][1] == pytest.approx(momentum, abs=5e-3), step
    assert trace[99][0] / BASE_LR == pytest.approx(1 / 25 / 1e4)
    assert trace[99][1] == pytest.approx(0.95)


def test_cosine_restart_times_are_geometric() -> None:
    trace = lrs({"name": "cosine", "cycles": 4, "cycle_mult": 2}, 150)
    restarts = [t for t, (a, b) in enumerate(itertools.pairwise(trace), 1) if b > a]
    assert restarts == [10, 30, 70]  # 10 + 20 + 40 + 80 = 150


@pytest.mark.parametrize(
    "schedule",
    [
        {"name": "multistep", "milestones": [5, 3]},
        {"name": "multistep", "milestones": [0]},
        {"name": "one_cycle", "base_momentum": 0.99},
        {"name": "wsd", "shape": "cubic"},
    ],
)
def test_invalid_settings_are_rejected_in_the_spec(schedule: dict[str, Any]) -> None:
    raw = {
        "data": {"name": "digits"},
        "model": {"name": "mlp"},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "schedule": schedule,
        "train": {"steps": 10},
    }
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert err.value.errors[0]["path"].startswith("schedule")


@pytest.mark.parametrize("name", sorted(EVERY))
@pytest.mark.parametrize(("total", "warmup"), [(1, 0), (2, 0), (3, 0), (2, 5), (5, 5)])
def test_very_short_runs_give_finite_non_negative_rates(name: str, total: int, warmup: int) -> None:
    trace = lrs({"name": name, "warmup_steps": warmup, **EVERY[name]}, total)
    assert all(math.isfinite(v) and 0 <= v <= 1 for v in trace), trace


def test_restarts_land_exactly_for_a_cycle_mult_of_three() -> None:
    trace = lrs({"name": "cosine", "cycles": 3, "cycle_mult": 3}, 13 * 5)  # 5 + 15 + 45
    assert [t for t, v in enumerate(trace) if v == 1.0] == [0, 5, 20]
