"""`alr_smag` against the step-back implementation's rule (formulas-optimizers.md §16).

Provisional: the rule comes from a third-party implementation; the paper's exact d and c are
unverified (formulas §26).
"""

from __future__ import annotations

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
    with_uniform_decay,
)
from tests.reference.alr_smag import reference
from trainlib import build_optimizer

SPEC = {"name": "alr_smag", "lr": 0.5, "beta": 0.8, "lb": 0.1, "c": 2.0, "weight_decay": 0.05}


def run_fixture(steps: list[tuple[list[float], float]], **settings) -> list[list[float]]:
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    optimizer = build_optimizer({"name": "alr_smag", **settings}, [p])
    out = []
    for g, f in steps:
        p.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step(loss=torch.tensor(f, dtype=torch.float64))
        out.append(p.detach().tolist())
    return out


@pytest.mark.parametrize(
    "spec",
    [SPEC, {"name": "alr_smag", "lr": 0.05, "beta": 0.0}],
    ids=["decay-lb-c", "capped-no-momentum"],
)
def test_matches_the_numpy_reference(spec) -> None:
    settings = {k: v for k, v in spec.items() if k != "name"}
    assert_follows_reference(with_uniform_decay(spec), reference, settings)


def test_worked_example_fixture_a() -> None:
    steps = [([0.5, -1.0], 2.0), ([-0.3, 0.2], 0.5)]
    theta = run_fixture(steps, lr=1.0)  # τ1 = 1 (capped), τ2 = 0.5/0.5125
    np.testing.assert_allclose(theta[0], [0.5, -1.0], atol=1e-9)
    np.testing.assert_allclose(theta[1], [0.3536585366, -0.3170731707], atol=1e-9)
    theta = run_fixture(steps, lr=0.1)
    np.testing.assert_allclose(theta[0], [0.95, -1.9], atol=1e-9)
    np.testing.assert_allclose(theta[1], [0.935, -1.83], atol=1e-9)


def test_foreach_and_single_tensor_paths_agree() -> None:
    assert_foreach_matches_single(with_uniform_decay(SPEC), quadratic_problem(seed=1))


def test_resumes_bit_identically() -> None:
    assert_resumes_bit_identically(with_uniform_decay(SPEC), quadratic_problem(seed=2))


def test_parameter_without_gradient_is_untouched() -> None:
    assert_untouched_without_grad(SPEC, frozen_shapes=((4,),))


@pytest.mark.parametrize(
    "case",
    [
        # f* = 0 is the true minimum of both: the Polyak step is at its best here
        converges("rosenbrock", 2000, {"lr": 1.0}, 1e-8),
        converges("beale", 1000, {"lr": 1.0}, 1e-8),
        # separable data: f* = 0 is only approached as |w| → ∞
        converges("logistic", 300, {"lr": 1.0}, 0.1),
    ],
)
def test_converges(case: Convergence) -> None:
    assert_converges("alr_smag", case)


def test_d_is_a_sum_not_an_average() -> None:
    p = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    optimizer = build_optimizer({"name": "alr_smag", "beta": 0.9}, [p])
    g = torch.tensor([0.3, -0.4], dtype=torch.float64)
    for _ in range(2):
        p.grad = g.clone()
        optimizer.step(loss=torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(optimizer.state[p]["d"], 1.9 * g, rtol=0, atol=1e-15)


def test_one_step_size_for_all_tensors() -> None:
    # τ = min(lr, f/‖d‖²) with ‖d‖² summed over both tensors; each moves by -τ g.
    a = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    b = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    optimizer = build_optimizer({"name": "alr_smag", "lr": 10.0}, [("a", a), ("b", b)])
    ga = torch.tensor([1.0, -2.0], dtype=torch.float64)
    gb = torch.tensor([0.1, 0.2, -0.3], dtype=torch.float64)
    a.grad, b.grad = ga.clone(), gb.clone()
    optimizer.step(loss=torch.tensor(3.0, dtype=torch.float64))
    tau = 3.0 / (ga.square().sum() + gb.square().sum())
    torch.testing.assert_close(a.detach(), -tau * ga, rtol=1e-14, atol=0)
    torch.testing.assert_close(b.detach(), -tau * gb, rtol=1e-14, atol=0)


def test_loss_below_the_lower_bound() -> None:
    # Default (as the reference implementation): a negative step size, i.e. uphill.
    theta = run_fixture([([0.5, -1.0], 0.0)], lb=1.0)
    assert theta[0][0] > 1.0 and theta[0][1] < -2.0
    # clamp_negative: no step at all.
    theta = run_fixture([([0.5, -1.0], 0.0)], lb=1.0, clamp_negative=True)
    assert theta[0] == [1.0, -2.0]


def test_needs_the_loss_and_accepts_a_closure() -> None:
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    optimizer = build_optimizer({"name": "alr_smag", "lr": 1.0}, [p])
    assert optimizer.needs_loss
    p.grad = torch.tensor([0.5, -1.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="needs the loss"):
        optimizer.step()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = 0.5 * (torch.tensor([1.0, 4.0], dtype=torch.float64) * p**2).sum()
        loss.backward()
        return loss

    loss = optimizer.step(closure)  # fixture Q: f = 8.5, g = [1, -8], τ = min(1, 8.5/65)
    assert float(loss.detach()) == 8.5
    np.testing.assert_allclose(p.detach(), [1 - 8.5 / 65, -2 + 8 * 8.5 / 65], atol=1e-12)


def test_zero_direction_does_not_divide_by_zero() -> None:
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    spec = {"name": "alr_smag", "weight_decay": 0.5, "lr": 0.1}
    optimizer = build_optimizer(with_uniform_decay(spec), [p])
    p.grad = torch.zeros(2, dtype=torch.float64)
    optimizer.step(loss=torch.tensor(1.0, dtype=torch.float64))
    np.testing.assert_allclose(p.detach(), [0.95, -1.9], atol=1e-15)  # τ = lr: decay only


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({"beta": 1.0}, "optimizer.beta"),
        ({"c": 0}, "optimizer.c"),
        ({"weight_decay": -1}, "optimizer.weight_decay"),
    ],
)
def test_bad_settings_are_rejected(bad, path) -> None:
    assert_spec_error({"name": "alr_smag", **bad}, path)


def test_trains_a_tiny_job() -> None:
    train_tiny_job({"name": "alr_smag", "lr": 1.0}, min_accuracy=0.5)
