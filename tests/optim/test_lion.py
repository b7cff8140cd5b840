"""lion (Symbolic Discovery of Optimization Algorithms), google/automl semantics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tests.optim.helpers import (
    Convergence,
    assert_converges,
    assert_follows_reference,
    assert_foreach_matches_single,
    assert_resumes_bit_identically,
    assert_spec_error,
    assert_untouched_without_grad,
    converges,
    quadratic_problem,
    train_tiny_job,
    trajectory,
    with_uniform_decay,
)
from tests.reference.lion import reference
from trainlib import build_optimizer

CASES: dict[str, dict[str, Any]] = {
    "decay": {"name": "lion", "lr": 0.01, "betas": (0.8, 0.95), "weight_decay": 0.5},
    "defaults-but-lr": {"name": "lion", "lr": 3e-3},
}


def spec_of(case: str, **extra: Any) -> dict[str, Any]:
    return with_uniform_decay({**CASES[case], **extra})


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("foreach", [False, True])
def test_matches_numpy_reference(case: str, foreach: bool) -> None:
    assert_follows_reference(spec_of(case, foreach=foreach), reference, CASES[case])


# --- worked example (formulas-optimizers.md §8, fixture A) --------------------------------------


@pytest.mark.parametrize("foreach", [False, True])
def test_worked_example(foreach: bool) -> None:
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    spec = with_uniform_decay({"name": "lion", "lr": 0.1, "weight_decay": 0.1, "foreach": foreach})
    optimizer = build_optimizer(spec, [("w", p)])
    thetas = []
    for g in ([0.5, -1.0], [-0.3, 0.2]):
        p.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step()
        thetas.append(p.detach().numpy().copy())
    np.testing.assert_allclose(thetas[0], [0.89, -1.88], atol=1e-9)
    # step 2: c = 0.9·m1 + 0.1·g2 = [−0.0255, 0.011] with m1 = 0.01·g1 (β2 = 0.99)
    np.testing.assert_allclose(thetas[1], [0.9811, -1.9612], atol=1e-9)
    # m2 = 0.99·m1 + 0.01·g2, updated after the step
    np.testing.assert_allclose(
        optimizer.state[p]["exp_avg"].numpy(), [0.00195, -0.0079], atol=1e-15
    )


def test_defaults_are_the_papers() -> None:
    group = build_optimizer({"name": "lion"}, [nn.Parameter(torch.zeros(2, 2))]).param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (1e-4, (0.9, 0.99), 0.0)


# --- paper properties ----------------------------------------------------------------------------


@pytest.mark.parametrize("foreach", [False, True])
def test_every_coordinate_moves_by_exactly_lr_besides_the_decay(foreach: bool) -> None:
    """θ_t − θ_{t−1}(1 − ηλ) = −η sign(c) ∈ {−η, 0, η} elementwise, every step."""
    lr, lam = 0.01, 0.5
    problem = quadratic_problem(seed=1)
    spec = with_uniform_decay({"name": "lion", "lr": lr, "weight_decay": lam, "foreach": foreach})
    previous = problem.init
    moved = 0
    for theta in trajectory(spec, problem, 20):
        for k in theta:
            step = np.abs(theta[k] - previous[k] * (1 - lr * lam))
            at_zero, at_lr = np.isclose(step, 0, atol=1e-13), np.isclose(step, lr, atol=1e-13)
            assert np.all(at_zero | at_lr), (k, step)
            moved += int(at_lr.sum())
        previous = theta
    assert moved > 0


def test_a_zero_interpolation_does_not_move_the_coordinate() -> None:
    """sign(0) = 0: at the first step (m = 0) a zero gradient entry leaves θ_i where it is."""
    p = nn.Parameter(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    optimizer = build_optimizer({"name": "lion", "lr": 0.1}, [p])
    p.grad = torch.tensor([0.5, 0.0, -1e-30], dtype=torch.float64)
    optimizer.step()
    np.testing.assert_array_equal(p.detach().numpy(), [0.9, -2.0, 3.1])


def box_problem(
    lam: float, lr: float, theta0: np.ndarray, steps: int, foreach: bool = False
) -> tuple[list[np.ndarray], np.ndarray]:
    """Separable quadratic ½ Σ a (θ − c)² whose minimum c lies partly outside ‖θ‖∞ ≤ 1/λ."""
    rng = np.random.default_rng(11)
    a = rng.uniform(0.5, 2.0, size=theta0.shape)
    c = rng.normal(scale=2.0 / lam, size=theta0.shape)
    assert np.abs(c).max() > 1.5 / lam and np.abs(c).min() < 0.8 / lam  # both kinds
    p = nn.Parameter(torch.tensor(theta0))
    spec = with_uniform_decay({"name": "lion", "lr": lr, "weight_decay": lam, "foreach": foreach})
    optimizer = build_optimizer(spec, [("w", p)])
    at, ct = torch.tensor(a), torch.tensor(c)
    path = []
    for _ in range(steps):
        optimizer.zero_grad()
        (0.5 * at * (p - ct) ** 2).sum().backward()
        optimizer.step()
        path.append(p.detach().numpy().copy())
    return path, c


@pytest.mark.parametrize("foreach", [False, True])
def test_decoupled_decay_keeps_iterates_in_the_box(foreach: bool) -> None:
    """Lion Secretly Solves Constrained Optimization: with decay λ, Lion minimises f subject to
    ‖θ‖∞ ≤ 1/λ. From inside the box the iterates never leave it (|θ|(1 − ηλ) + η ≤ 1/λ), and they
    settle at the constrained minimiser clip(c, ±1/λ) (to within the O(η) sign rattle)."""
    lam, lr = 0.5, 0.01
    theta0 = np.random.default_rng(2).uniform(-1.5, 1.5, size=(4, 6))  # inside: 1/λ = 2
    path, c = box_problem(lam, lr, theta0, 2000, foreach)
    for theta in path:
        assert np.abs(theta).max() <= 1 / lam + 1e-12
    np.testing.assert_allclose(path[-1], np.clip(c, -1 / lam, 1 / lam), atol=5 * lr)
    at_the_wall = np.abs(c) > 1 / lam
    np.testing.assert_allclose(np.abs(path[-1][at_the_wall]), 1 / lam, atol=2 * lr)


def test_iterates_outside_the_box_are_drawn_in_geometrically() -> None:
    """|θ_t| − 1/λ ≤ (1 − ηλ)^t (|θ_0| − 1/λ) for a start outside the box."""
    lam, lr = 0.5, 0.01
    theta0 = np.full((3, 3), 6.0) * np.sign(np.random.default_rng(4).normal(size=(3, 3)))
    path, _ = box_problem(lam, lr, theta0, 1500)
    for t, theta in enumerate(path, start=1):
        bound = 1 / lam + (1 - lr * lam) ** t * (6.0 - 1 / lam)
        assert np.abs(theta).max() <= bound + 1e-12, t
    assert np.abs(path[-1]).max() <= 1 / lam + 2 * lr


# --- foreach, resume, parameters without gradients ---------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_foreach_and_single_tensor_paths_agree(case: str) -> None:
    assert_foreach_matches_single(spec_of(case), quadratic_problem(seed=5))


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("foreach", [False, True])
def test_resumes_bit_identically(case: str, foreach: bool) -> None:
    assert_resumes_bit_identically(spec_of(case, foreach=foreach), quadratic_problem(seed=6))


@pytest.mark.parametrize("foreach", [False, True])
def test_parameter_without_gradient_is_untouched_and_gets_no_state(foreach: bool) -> None:
    optimizer = assert_untouched_without_grad(
        {"name": "lion", "weight_decay": 0.1, "foreach": foreach}
    )
    assert any("exp_avg" in state for state in optimizer.state.values())


def test_closure_is_evaluated_before_the_step() -> None:
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = build_optimizer({"name": "lion", "lr": 0.1}, [p])

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    assert float(opt.step(closure).detach()) == 5.0
    np.testing.assert_array_equal(p.detach().numpy(), [0.9, -1.9])


# --- convergence ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        # fixed-size sign steps rattle across Rosenbrock's narrow valley: Lion ends O(η) from the
        # minimum (3.5e-3 here), so the threshold is weaker than for adaptive methods
        converges("rosenbrock", 3000, {"lr": 3e-3}, 1e-2),
        converges("beale", 2000, {"lr": 1e-3}, 1e-3),
        converges("logistic", 500, {"lr": 3e-2}, 0.08),
    ],
)
def test_converges(case: Convergence) -> None:
    assert_converges("lion", case)


# --- validation and a real job -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("optimizer", "path"),
    [
        ({"name": "lion", "betas": [1.0, 0.99]}, "optimizer.betas"),
        ({"name": "lion", "betas": [0.9, -0.1]}, "optimizer.betas"),
        ({"name": "lion", "weight_decay": -0.1}, "optimizer.weight_decay"),
    ],
)
def test_bad_settings_are_rejected_with_their_path(optimizer: dict, path: str) -> None:
    assert_spec_error(optimizer, path)


def test_trains_a_tiny_job() -> None:
    train_tiny_job({"name": "lion", "lr": 1e-3, "weight_decay": 0.1}, min_accuracy=0.5)
