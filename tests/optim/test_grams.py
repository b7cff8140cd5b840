"""`grams` against the official code's rule (formulas-optimizers.md §15) and its properties."""

from __future__ import annotations

import math

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
from tests.reference.grams import reference
from trainlib import build_optimizer

SPEC = {"name": "grams", "lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-3, "weight_decay": 0.1}


def run_fixture(grads: list[list[float]], theta0: list[float], **settings) -> list[list[float]]:
    p = nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
    optimizer = build_optimizer({"name": "grams", **settings}, [p])
    out = []
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step()
        out.append(p.detach().tolist())
    return out


@pytest.mark.parametrize(
    "spec",
    [SPEC, {"name": "grams", "lr": 0.02, "correct_bias": False, "weight_decay": 0.01}],
    ids=["decay-eps", "no-bias-correction"],
)
def test_matches_the_numpy_reference(spec) -> None:
    settings = {k: v for k, v in spec.items() if k != "name"}
    assert_follows_reference(with_uniform_decay(spec), reference, settings)


def test_worked_example_fixture_a() -> None:
    theta = run_fixture([[0.5, -1.0], [-0.3, 0.2]], [1.0, -2.0], lr=0.1)
    np.testing.assert_allclose(theta[0], [0.9000063242, -1.9000031622], atol=1e-9)
    np.testing.assert_allclose(theta[1], [0.9191550888, -1.9511041846], atol=1e-9)


def test_foreach_and_single_tensor_paths_agree() -> None:
    assert_foreach_matches_single(with_uniform_decay(SPEC), quadratic_problem(seed=1))


def test_resumes_bit_identically() -> None:
    assert_resumes_bit_identically(with_uniform_decay(SPEC), quadratic_problem(seed=2))


def test_parameter_without_gradient_is_untouched() -> None:
    assert_untouched_without_grad(SPEC, frozen_shapes=((4,),))


@pytest.mark.parametrize(
    "case",
    [
        converges("rosenbrock", 2000, {"lr": 0.1}, 1e-2),
        converges("beale", 1000, {"lr": 0.1}, 1e-6),
        converges("logistic", 300, {"lr": 0.1}, 0.15),
    ],
)
def test_converges(case: Convergence) -> None:
    assert_converges("grams", case)


def test_a_zero_gradient_coordinate_does_not_move_despite_momentum() -> None:
    theta = run_fixture([[0.5, -1.0], [0.0, 0.2]], [1.0, -2.0], lr=0.1)
    assert theta[1][0] == theta[0][0]  # m_1 ≠ 0, but sign(g_1) = 0
    assert theta[1][1] != theta[0][1]


def test_direction_is_minus_the_sign_of_the_current_gradient() -> None:
    # The momentum points the other way (large positive history), the step follows -sign(g).
    p = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    optimizer = build_optimizer({"name": "grams", "lr": 0.01}, [p])
    for _ in range(5):
        p.grad = torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
        optimizer.step()
    before = p.detach().clone()
    grad = torch.tensor([-0.1, 0.1, 0.1], dtype=torch.float64)
    p.grad = grad.clone()
    optimizer.step()
    assert torch.equal(torch.sign(p.detach() - before), -torch.sign(grad))
    assert torch.equal(p.grad, grad)  # the gradient is left as it was


def test_step_magnitude_is_adams() -> None:
    # Same |m|, v as Adam (ε convention b): |Δθ| = η sqrt(1-β2^t)/(1-β1^t) |m|/(sqrt(v)+ε).
    theta = run_fixture([[0.5, -1.0]], [1.0, -2.0], lr=0.1, eps=1e-6)
    m, v = 0.1 * np.array([0.5, 1.0]), 0.001 * np.array([0.25, 1.0])
    size = 0.1 * math.sqrt(0.001) / 0.1
    np.testing.assert_allclose(
        np.abs(np.array(theta[0]) - [1.0, -2.0]), size * m / (np.sqrt(v) + 1e-6), rtol=1e-12
    )


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({"betas": [0.9, 1.0]}, "optimizer.betas[1]"),
        ({"eps": 0}, "optimizer.eps"),
        ({"weight_decay": -1}, "optimizer.weight_decay"),
    ],
)
def test_bad_settings_are_rejected(bad, path) -> None:
    assert_spec_error({"name": "grams", **bad}, path)


def test_trains_a_tiny_job() -> None:
    train_tiny_job({"name": "grams", "lr": 0.01}, min_accuracy=0.5)
