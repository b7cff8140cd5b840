"""Learning-rate schedules, as multipliers of each param group's base learning rate.

Every schedule is a pure function of the optimizer step `t` (0-based) and the run length `T`:
an optional linear warmup over `warmup_steps` ((t+1)/W, reaching the full rate on its last
step), then the schedule's own shape over the remaining `T - W` steps. Group multipliers
(`lr_scale`, μP) are kept because every group is scaled relatively, never set absolutely.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainlib.components.schedules_runtime import ScheduledLR
from trainlib.registries import SCHEDULES

Multiplier = Callable[[int], float]


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    warmup_steps: int = Field(0, ge=0, description="linear warmup from 0 over this many steps")


class ConstantSettings(_Base):
    """Constant learning rate after an optional linear warmup."""


class StepSettings(_Base):
    """lr · gamma^floor(t / step_size) (torch's StepLR), counted after the warmup."""

    step_size: int = Field(..., ge=1, description="steps between decays")
    gamma: float = Field(0.1, gt=0, le=1)


class MultiStepSettings(_Base):
    """lr · gamma^(number of milestones passed) (torch's MultiStepLR), counted after the warmup."""

    milestones: list[int] = Field(..., min_length=1, max_length=100)
    gamma: float = Field(0.1, gt=0, le=1)

    @model_validator(mode="after")
    def _increasing(self) -> MultiStepSettings:
        if any(m < 1 for m in self.milestones) or self.milestones != sorted(set(self.milestones)):
            raise ValueError("milestones must be positive and strictly increasing")
        return self


class ExponentialSettings(_Base):
    """lr · gamma^t (torch's ExponentialLR), counted after the warmup."""

    gamma: float = Field(..., gt=0, le=1)


class CosineSettings(_Base):
    """Cosine decay to `min_lr_ratio` x lr, after an optional linear warmup.

    With `cycles` > 1 the decay restarts (SGDR); `cycle_mult` > 1 makes each cycle that many
    times longer than the one before (SGDR's T_mult), the cycles filling the run exactly.
    """

    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    cycles: int = Field(1, ge=1, le=1000, description="number of cosine cycles (restarts between)")
    cycle_mult: float = Field(1.0, ge=1, le=10, description="each cycle's length over the last's")


class LinearDecaySettings(_Base):
    """Linear decay from lr to `min_lr_ratio` x lr over the steps after the warmup."""

    min_lr_ratio: float = Field(0.0, ge=0, le=1)


class OneCycleSettings(_Base):
    """torch's OneCycleLR with max_lr = the optimizer's lr; momentum (or Adam's β1) cycles the
    other way between `max_momentum` and `base_momentum`."""

    pct_start: float = Field(0.3, gt=0, lt=1, description="fraction of steps spent rising")
    div_factor: float = Field(25.0, ge=1, description="initial lr = max_lr / div_factor")
    final_div_factor: float = Field(1e4, ge=1, description="final lr = initial lr / this")
    anneal: Literal["cos", "linear"] = "cos"
    three_phase: bool = Field(False, description="rise, fall back to the initial lr, annihilate")
    cycle_momentum: bool = True
    base_momentum: float = Field(0.85, ge=0, lt=1)
    max_momentum: float = Field(0.95, ge=0, lt=1)

    @model_validator(mode="after")
    def _momentum_order(self) -> OneCycleSettings:
        if self.base_momentum > self.max_momentum:
            raise ValueError("base_momentum must be <= max_momentum")
        return self


class WsdSettings(_Base):
    """Warmup, a stable phase at the full rate, then a cooldown over the last `cooldown_fraction`
    of all steps down to `final_lr_ratio`, linear or 1 − sqrt shaped. (The reference warms up
    from 1% of the peak; here every schedule shares the (t+1)/W warmup.)"""

    cooldown_fraction: float = Field(
        0.2, ge=0, le=1, description="share of all steps in the cooldown (about 20% matches cosine)"
    )
    shape: Literal["linear", "sqrt"] = Field("sqrt", description="1 − u, or 1 − sqrt(u)")
    final_lr_ratio: float = Field(0.0, ge=0, le=1)


def _with_warmup(warmup_steps: int, after: Multiplier) -> Multiplier:
    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return after(step - warmup_steps)

    return multiplier


def constant_multiplier(s: ConstantSettings, total_steps: int) -> Multiplier:
    return _with_warmup(s.warmup_steps, lambda _step: 1.0)


def step_multiplier(s: StepSettings, total_steps: int) -> Multiplier:
    return _with_warmup(s.warmup_steps, lambda t: s.gamma ** (t // s.step_size))


def multistep_multiplier(s: MultiStepSettings, total_steps: int) -> Multiplier:
    return _with_warmup(s.warmup_steps, lambda t: s.gamma ** bisect.bisect_right(s.milestones, t))


def exponential_multiplier(s: ExponentialSettings, total_steps: int) -> Multiplier:
    return _with_warmup(s.warmup_steps, lambda t: s.gamma**t)


def _cycle_position(step: float, first: float, mult: float) -> tuple[float, float]:
    """(steps into the current cycle, its length) for cycles of length first·mult^i."""
    if mult == 1.0:
        return step % first, first

    def start(n: int) -> float:
        return first * (mult**n - 1) / (mult - 1)

    n = math.floor(math.log(1 + step * (mult - 1) / first, mult))
    while n > 0 and start(n) > step:  # the logarithm may land a hair off a restart
        n -= 1
    while start(n + 1) <= step:
        n += 1
    return step - start(n), first * mult**n


def cosine_multiplier(s: CosineSettings, total_steps: int) -> Multiplier:
    """SGDR (Loshchilov & Hutter, 2017): min + (1 − min)·½(1 + cos(π·T_cur/T_i)) per cycle."""
    decay_steps = max(1, total_steps - s.warmup_steps)
    # geometric cycle lengths that sum to the decay steps
    total_units = (
        s.cycles if s.cycle_mult == 1.0 else (s.cycle_mult**s.cycles - 1) / (s.cycle_mult - 1)
    )
    first = decay_steps / total_units

    def after(step: int) -> float:
        if step >= decay_steps:
            t = 1.0
        else:
            into, length = _cycle_position(step, first, s.cycle_mult)
            t = into / length
        return s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return _with_warmup(s.warmup_steps, after)


def linear_decay_multiplier(s: LinearDecaySettings, total_steps: int) -> Multiplier:
    """Defazio et al. (2023): η_t = η·(1 − t/T), the worst-case-optimal last-iterate schedule."""
    decay_steps = max(1, total_steps - s.warmup_steps)

    def after(step: int) -> float:
        frac = min(step, decay_steps) / decay_steps
        return s.min_lr_ratio + (1 - s.min_lr_ratio) * (1 - frac)

    return _with_warmup(s.warmup_steps, after)


def _anneal(kind: str, start: float, end: float, pct: float) -> float:
    if kind == "cos":
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start


def _one_cycle_phases(s: OneCycleSettings, steps: int) -> list[tuple[float, float, float]]:
    """(end step, lr-multiplier start, end) per phase, torch's OneCycleLR boundaries."""
    initial = 1.0 / s.div_factor
    final = initial / s.final_div_factor
    rise = float(s.pct_start * steps) - 1
    if s.three_phase:
        return [(rise, initial, 1.0), (2 * rise, 1.0, initial), (steps - 1, initial, final)]
    return [(rise, initial, 1.0), (steps - 1, 1.0, final)]


def one_cycle_functions(s: OneCycleSettings, total_steps: int) -> tuple[Multiplier, Multiplier]:
    """(lr multiplier, momentum) of Smith's 1cycle policy, matching torch's OneCycleLR."""
    steps = max(2, total_steps - s.warmup_steps)
    phases = _one_cycle_phases(s, steps)
    up = (s.max_momentum, s.base_momentum)  # momentum falls while the lr rises
    momenta = [up, up[::-1]] if not s.three_phase else [up, up[::-1], (s.max_momentum,) * 2]

    def position(step: int) -> tuple[int, float]:
        t = min(step, steps - 1)
        start = 0.0
        for i, (end, _, _) in enumerate(phases):
            if t <= end or i == len(phases) - 1:
                span = end - start
                return i, 1.0 if span <= 0 else min(1.0, (t - start) / span)
            start = end
        raise AssertionError("unreachable")

    def lr(step: int) -> float:
        i, pct = position(step)
        return _anneal(s.anneal, phases[i][1], phases[i][2], pct)

    def momentum(step: int) -> float:
        i, pct = position(step)
        return _anneal(s.anneal, momenta[i][0], momenta[i][1], pct)

    warm = s.warmup_steps
    return _with_warmup(warm, lr), lambda t: s.max_momentum if t < warm else momentum(t - warm)


def wsd_multiplier(s: WsdSettings, total_steps: int) -> Multiplier:
    """Hägele et al. (2024): f = 1 until t_c = T − ⌊cT⌋, then f_end + (1 − f_end)(1 − u) or
    (1 − sqrt(u)), u = (t − t_c)/⌊cT⌋; f_end after T."""
    n_cool = math.floor(s.cooldown_fraction * total_steps)
    t_c = max(s.warmup_steps, total_steps - n_cool)
    n_cool = total_steps - t_c
    end = s.final_lr_ratio

    def multiplier(step: int) -> float:
        if step < s.warmup_steps:
            return (step + 1) / s.warmup_steps
        if step < t_c:
            return 1.0
        if step >= total_steps or n_cool == 0:
            return end
        u = (step - t_c) / n_cool
        return end + (1 - end) * (1 - (math.sqrt(u) if s.shape == "sqrt" else u))

    return multiplier


@SCHEDULES.register("constant", settings=ConstantSettings, summary="constant lr, optional warmup")
def build_constant(
    s: ConstantSettings, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    return ScheduledLR(optimizer, constant_multiplier(s, total_steps))


@SCHEDULES.register("step", settings=StepSettings, summary="decay by gamma every step_size steps")
def build_step(
    s: StepSettings, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    return ScheduledLR(optimizer, step_multiplier(s, total_steps))


@SCHEDULES.register(
    "multistep", settings=MultiStepSettings, summary="decay by gamma at each milestone step"
)
def build_multistep(
    s: MultiStepSettings, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    return ScheduledLR(optimizer, multistep_multiplier(s, total_steps))


@SCHEDULES.register(
    "exponential", settings=ExponentialSettings, summary="decay by gamma every step"
)
def build_exponential(
    s: ExponentialSettings, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    return ScheduledLR(optimizer, exponential_multiplier(s, total_steps))


@SCHEDULES.register(
    "cosine",
    settings=CosineSettings,
    summary="cosine decay with linear warmup and restarts",
    paper="SGDR: Stochastic Gradient Descent with Warm Restarts (Loshchilov & Hutter, 2017)",
)
def build_cosine(
    s: CosineSettings, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    return ScheduledLR(optimizer, cosine_multiplier(s, total_steps))


@SCHEDULES.register(
    "linear_decay",
    settings=LinearDecaySettings,
    summary="linear decay to zero (or a floor) after warmup",
    paper="When, Why and How Much? Adaptive Learning Rate Scheduling by Refinement "
    "(Defazio, Cutkosky, Mehta & Mishchenko, 2023)",
)
def build_linear_decay(
    s: LinearDecaySettings, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    return ScheduledLR(optimizer, linear_decay_multiplier(s, total_steps))


@SCHEDULES.register(
    "one_cycle",
    settings=OneCycleSettings,
    summary="1cycle: lr up then down (cos or linear), momentum the other way",
    paper="A disciplined approach to neural network hyper-parameters: Part 1 (Smith, 2018)",
)
def build_one_cycle(
    s: OneCycleSettings, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    lr, momentum = one_cycle_functions(s, total_steps)
    return ScheduledLR(optimizer, lr, momentum if s.cycle_momentum else None)


@SCHEDULES.register(
    "wsd",
    settings=WsdSettings,
    summary="warmup, stable, then a linear or 1-sqrt cooldown",
    paper="Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations "
    "(Hägele et al., 2024)",
)
def build_wsd(
    s: WsdSettings, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    return ScheduledLR(optimizer, wsd_multiplier(s, total_steps))
