"""Shared fixtures for optimizer tests: a fixed small problem, trajectories, properties.

The reference problem is a separable quadratic L(θ) = Σ ½ a ⊙ (θ − c)² over three tensors of
different shapes (a matrix, a vector, a 4-D kernel) in float64, so a NumPy reference needs no
autograd: the gradient is a ⊙ (θ − c) and the loss is known in closed form.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from trainlib import TrainResult, build_optimizer, parse_spec, train
from trainlib.spec import SpecError
from trainlib.step import evaluation_weights

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Problem:
    init: Arrays
    a: Arrays
    c: Arrays

    def grad(self, theta: Arrays) -> Arrays:
        return {k: self.a[k] * (theta[k] - self.c[k]) for k in theta}

    def loss(self, theta: Arrays) -> float:
        return float(sum((0.5 * self.a[k] * (theta[k] - self.c[k]) ** 2).sum() for k in theta))


def quadratic_problem(seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    shapes = {"layer.weight": (4, 3), "layer.bias": (4,), "conv.weight": (2, 3, 2, 2)}
    init = {k: rng.normal(size=s) for k, s in shapes.items()}
    a = {k: rng.uniform(0.5, 3.0, size=s) for k, s in shapes.items()}
    c = {k: rng.normal(scale=0.5, size=s) for k, s in shapes.items()}
    return Problem(init, a, c)


def with_uniform_decay(spec: dict[str, Any]) -> dict[str, Any]:
    """References decay every tensor alike: switch off the no-decay groups unless given."""
    spec = copy.deepcopy(spec)
    target = spec.get("base", spec)
    target.setdefault("groups", {"no_decay": []})
    return spec


def make_params(problem: Problem) -> list[tuple[str, nn.Parameter]]:
    items = problem.init.items()
    return [(k, nn.Parameter(torch.tensor(v, dtype=torch.float64))) for k, v in items]


def step_once(
    optimizer: torch.optim.Optimizer, params: list[tuple[str, nn.Parameter]], problem: Problem
) -> float:
    """One step on the problem, in whatever form the optimizer needs (loss, closure, two passes)."""
    a = {k: torch.tensor(v, dtype=torch.float64) for k, v in problem.a.items()}
    c = {k: torch.tensor(v, dtype=torch.float64) for k, v in problem.c.items()}

    def loss_fn() -> torch.Tensor:
        loss = sum((0.5 * a[k] * (p - c[k]) ** 2).sum() for k, p in params)
        assert isinstance(loss, torch.Tensor)
        return loss

    return float(_step(optimizer, loss_fn))


def trajectory(spec: dict[str, Any], problem: Problem, steps: int) -> list[Arrays]:
    """Parameters after each of `steps` steps (evaluation weights for schedule-free)."""
    params = make_params(problem)
    optimizer = build_optimizer(spec, params)
    out: list[Arrays] = []
    for _ in range(steps):
        step_once(optimizer, params, problem)
        with evaluation_weights(optimizer):
            out.append({k: p.detach().numpy().copy() for k, p in params})
    return out


def assert_matches_reference(
    ours: list[Arrays], reference: list[Arrays], rtol: float = 1e-6, atol: float = 1e-12
) -> None:
    assert len(ours) == len(reference)
    for step, (mine, theirs) in enumerate(zip(ours, reference, strict=True), start=1):
        for k in theirs:
            np.testing.assert_allclose(
                mine[k], theirs[k], rtol=rtol, atol=atol, err_msg=f"step {step}, {k}"
            )


def assert_follows_reference(
    spec: dict[str, Any],
    reference: Callable[[dict[str, Any], Problem, int], list[Arrays]],
    reference_spec: dict[str, Any] | None = None,
    steps: int = 20,
    rtol: float = 1e-6,
) -> None:
    """`steps` steps under `spec` on the reference problem follow the NumPy reference's, which is
    given `reference_spec` (by default `spec` itself)."""
    problem = quadratic_problem()
    expected = reference(spec if reference_spec is None else reference_spec, problem, steps)
    assert_matches_reference(trajectory(spec, problem, steps), expected, rtol=rtol)


def assert_resumes_bit_identically(
    spec: dict[str, Any], problem: Problem, stop_at: int = 5, total: int = 12
) -> None:
    """Stop at step k, rebuild from a state_dict copy, continue: bit-identical at step N."""
    params = make_params(problem)
    optimizer = build_optimizer(spec, params)
    for _ in range(total):
        step_once(optimizer, params, problem)
    uninterrupted = {k: p.detach().clone() for k, p in params}

    params = make_params(problem)
    optimizer = build_optimizer(spec, params)
    for _ in range(stop_at):
        step_once(optimizer, params, problem)
    saved_state = copy.deepcopy(optimizer.state_dict())
    saved_params = {k: p.detach().clone() for k, p in params}

    resumed = [(k, nn.Parameter(saved_params[k].clone())) for k, _ in params]
    optimizer = build_optimizer(spec, resumed)
    optimizer.load_state_dict(saved_state)
    for _ in range(total - stop_at):
        step_once(optimizer, resumed, problem)
    for k, p in resumed:
        assert torch.equal(p.detach(), uninterrupted[k]), f"{k} differs after resuming"


def assert_foreach_matches_single(
    spec: dict[str, Any], problem: Problem, steps: int = 10, atol: float = 1e-12
) -> None:
    """The foreach (multi-tensor) path follows the single-tensor path's trajectory."""
    single = trajectory({**spec, "foreach": False}, problem, steps)
    multi = trajectory({**spec, "foreach": True}, problem, steps)
    assert_matches_reference(multi, single, rtol=1e-12, atol=atol)


def _step(optimizer: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Zero the gradients, backpropagate `loss_fn()` and step in the optimizer's own form."""

    def closure() -> torch.Tensor:
        loss = loss_fn()
        loss.backward()
        return loss

    optimizer.zero_grad(set_to_none=True)
    loss = closure()
    if getattr(optimizer, "two_pass", False):
        optimizer.step(closure)
    elif getattr(optimizer, "needs_loss", False):
        optimizer.step(loss=loss.detach())
    else:
        optimizer.step()
    return loss.detach()


def assert_untouched_without_grad(
    spec: dict[str, Any],
    frozen_shapes: tuple[tuple[int, ...], ...] = ((3, 2),),
    steps: int = 3,
    between_steps: Callable[[torch.optim.Optimizer], None] | None = None,
) -> torch.optim.Optimizer:
    """Parameters that never get a gradient keep their values, no gradient and no state.
    Returns the optimizer, for checks on the state of the parameter that did get gradients."""
    used = nn.Parameter(torch.randn(3, 2, dtype=torch.float64))
    frozen = [nn.Parameter(torch.randn(*s, dtype=torch.float64)) for s in frozen_shapes]
    before = [f.detach().clone() for f in frozen]
    used_before = used.detach().clone()
    named = [("used.weight", used)] + [(f"frozen{i}.weight", f) for i, f in enumerate(frozen)]
    optimizer = build_optimizer(spec, named)
    for _ in range(steps):
        _step(optimizer, lambda: (used**2).sum())
        if between_steps is not None:
            between_steps(optimizer)
    assert not torch.equal(used.detach(), used_before), "the parameter with gradients did not move"
    for (name, f), b in zip(named[1:], before, strict=True):
        assert torch.equal(f.detach(), b), f"{name} moved"
        assert f.grad is None
        assert not optimizer.state.get(f), f"{name} got optimizer state"
    return optimizer


def multiplier_fn(multipliers: list[float]) -> Callable[[int], float]:
    """LambdaLR's multiplier; the scheduler also asks for the step after the last one."""
    return lambda i: multipliers[min(i, len(multipliers) - 1)]


def run_with_gradients(
    spec: dict[str, Any], theta0: Any, grads: list[Any], multipliers: list[float] | None = None
) -> tuple[list[np.ndarray], torch.optim.Optimizer]:
    """Hand-given gradients for one tensor `w` (decayed uniformly): θ after each step, and the
    optimizer. `multipliers` drive a torch LambdaLR (η_t = lr·multipliers[t−1])."""
    p = nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
    optimizer = build_optimizer(with_uniform_decay(spec), [("w", p)])
    scheduler = None
    if multipliers is not None:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier_fn(multipliers))
    out = []
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step()
        out.append(p.detach().numpy().copy())
        if scheduler is not None:
            scheduler.step()
    return out, optimizer


def steps_with_gradients(
    spec: dict[str, Any], theta0: Any, grads: list[Any], multipliers: list[float] | None = None
) -> list[np.ndarray]:
    """θ after each of the hand-given gradients (see run_with_gradients)."""
    return run_with_gradients(spec, theta0, grads, multipliers)[0]


def minimal_job(optimizer_spec: dict[str, Any]) -> dict[str, Any]:
    """The smallest raw job around an optimizer section, for settings validation."""
    return {
        "data": {"name": "digits"},
        "model": {"name": "mlp"},
        "optimizer": optimizer_spec,
        "train": {"steps": 1},
    }


def assert_spec_error(optimizer_spec: dict[str, Any], path: str) -> None:
    """The job is rejected with a SpecError that names `path`."""
    with pytest.raises(SpecError) as info:
        parse_spec(minimal_job(optimizer_spec))
    assert path in [e["path"] for e in info.value.errors], info.value.errors


def train_tiny_job(
    optimizer_spec: dict[str, Any],
    steps: int = 40,
    min_accuracy: float | None = None,
    schedule: dict[str, Any] | None = None,
) -> TrainResult:
    """A real (tiny) job through trainlib.train: digits, a 32-unit MLP, on the CPU. It must
    complete with a finite loss and, where `min_accuracy` is given, beat it on validation."""
    raw: dict[str, Any] = {
        "seed": 0,
        "data": {"name": "digits", "batch_size": 64},
        "model": {"name": "mlp", "hidden": [32]},
        "optimizer": optimizer_spec,
        "train": {"steps": steps, "log_every": 10, "eval_every": steps, "device": "cpu"},
    }
    if schedule is not None:
        raw["schedule"] = schedule
    result = train(parse_spec(raw))
    assert result.status == "completed"
    assert math.isfinite(result.final_metrics["loss"])
    if min_accuracy is not None:
        assert result.final_metrics["val_accuracy"] > min_accuracy
    return result


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def beale(x: torch.Tensor) -> torch.Tensor:
    u, v = x[0], x[1]
    return (1.5 - u + u * v) ** 2 + (2.25 - u + u * v**2) ** 2 + (2.625 - u + u * v**3) ** 2


def logistic_data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 2, generator=gen, dtype=torch.float64)
    y = (x @ torch.tensor([2.0, -1.0], dtype=torch.float64) + 0.3 > 0).double()
    return x, y


def minimise(
    spec: dict[str, Any],
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    x0: list[float],
    steps: int,
) -> float:
    """Run `steps` steps from x0 (one 2-D parameter tensor); returns the final loss."""
    x = nn.Parameter(torch.tensor(x0, dtype=torch.float64))
    optimizer = build_optimizer(spec, [("x", x)])
    for _ in range(steps):
        _step(optimizer, lambda: loss_fn(x))
    with evaluation_weights(optimizer), torch.no_grad():
        return float(loss_fn(x))


def logistic_loss() -> Callable[[torch.Tensor], torch.Tensor]:
    """Two-class logistic regression on fixed data; the parameter is [w1, w2, b]."""
    x, y = logistic_data()

    def loss(theta: torch.Tensor) -> torch.Tensor:
        logits = x @ theta[:2] + theta[2]
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y)

    return loss


# The three standard problems, each from its standard start (losses 12.5, 14.2 and ln 2).
STARTS: dict[str, list[float]] = {
    "rosenbrock": [-1.5, 2.0],
    "beale": [1.0, 1.0],
    "logistic": [0.0, 0.0, 0.0],
}


@dataclass(frozen=True)
class Convergence:
    problem: str  # a key of STARTS
    steps: int
    settings: dict[str, Any]
    target: float


def converges(problem: str, steps: int, settings: dict[str, Any], target: float) -> Any:
    """A pytest parameter: `steps` steps with `settings` end below `target` on `problem`."""
    return pytest.param(Convergence(problem, steps, settings, target), id=problem)


def assert_converges(name: str, case: Convergence) -> None:
    """The optimizer `name` with the case's settings ends below its target (itself below the
    loss at the start, so the target means progress)."""
    loss_fn = {"rosenbrock": rosenbrock, "beale": beale, "logistic": logistic_loss()}[case.problem]
    x0 = STARTS[case.problem]
    start = float(loss_fn(torch.tensor(x0, dtype=torch.float64)))
    final = minimise({"name": name, **case.settings}, loss_fn, x0, case.steps)
    assert final < case.target < start, f"{case.problem}: {final} (target {case.target})"
