"""`schedulefree_adamw` against facebookresearch/schedule_free ≥ 1.3 (formulas-optimizers.md §20).

`trajectory` records the evaluation weights (x, via trainlib.step.evaluation_weights); the NumPy
reference returns x too.
"""

from __future__ import annotations

import copy

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
    make_params,
    quadratic_problem,
    step_once,
    train_tiny_job,
    with_uniform_decay,
)
from tests.reference.schedulefree_adamw import reference
from trainlib import build_optimizer

NAME = "schedulefree_adamw"
SPEC = {
    "name": NAME,
    "lr": 0.05,
    "betas": (0.8, 0.99),
    "eps": 1e-3,
    "weight_decay": 0.1,
    "warmup_steps": 5,
    "r": 0.5,
    "weight_lr_power": 1.0,
}


def run_fixture_a(**settings):
    """Fixture A, two steps: (y1, y2, x2, z2)."""
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    optimizer = build_optimizer(with_uniform_decay({"name": NAME, **settings}), [p])
    ys = []
    for g in ([0.5, -1.0], [-0.3, 0.2]):
        p.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step()
        ys.append(p.detach().tolist())
    optimizer.eval()
    x2 = p.detach().tolist()
    optimizer.train()
    return ys[0], ys[1], x2, optimizer.state[p]["z"].tolist()


@pytest.mark.parametrize(
    "spec",
    [SPEC, {"name": NAME, "lr": 0.02}],
    ids=["decay-warmup-r-power", "defaults-but-lr"],
)
def test_matches_the_numpy_reference(spec) -> None:
    settings = {k: v for k, v in spec.items() if k != "name"}
    assert_follows_reference(with_uniform_decay(spec), reference, settings)


@pytest.mark.parametrize(
    ("settings", "y1", "y2", "x2", "z2"),
    [
        (
            {},
            [0.900000002, -1.900000001],
            [0.9400230904, -1.9152577794],
            [0.9363846278, -1.9138707086],
            [0.9727692536, -1.9277414162],
        ),
        (
            {"weight_decay": 0.1},
            [0.890000002, -1.880000001],
            [0.9251280904, -1.8849177794],
            [0.9219346278, -1.8844707086],
            [0.9538692536, -1.8889414162],
        ),
        (
            {"warmup_steps": 2},
            [0.950000001, -1.9500000005],
            [1.0096707873, -1.972747961],
            [1.0082154023, -1.9721931327],
            [1.0227692526, -1.9777414157],
        ),
    ],
    ids=["defaults", "decay", "warmup"],
)
def test_worked_example_fixture_a(settings, y1, y2, x2, z2) -> None:
    got = run_fixture_a(lr=0.1, **settings)
    for ours, expected in zip(got, (y1, y2, x2, z2), strict=True):
        np.testing.assert_allclose(ours, expected, atol=1e-9)


def test_foreach_and_single_tensor_paths_agree() -> None:
    assert_foreach_matches_single(with_uniform_decay(SPEC), quadratic_problem(seed=1))


def test_resumes_bit_identically() -> None:
    assert_resumes_bit_identically(with_uniform_decay(SPEC), quadratic_problem(seed=2))


def test_resumes_bit_identically_from_eval_mode() -> None:
    """Checkpoints are taken in eval mode (x in the model): resuming and train() give y back."""
    problem, spec = quadratic_problem(seed=2), with_uniform_decay(SPEC)
    params = make_params(problem)
    optimizer = build_optimizer(spec, params)
    for _ in range(9):
        step_once(optimizer, params, problem)
    uninterrupted = {k: p.detach().clone() for k, p in params}

    params = make_params(problem)
    optimizer = build_optimizer(spec, params)
    for _ in range(4):
        step_once(optimizer, params, problem)
    optimizer.eval()
    saved = copy.deepcopy(optimizer.state_dict())
    resumed = [(k, nn.Parameter(p.detach().clone())) for k, p in params]
    optimizer = build_optimizer(spec, resumed)
    optimizer.load_state_dict(saved)
    optimizer.train()
    for _ in range(5):
        step_once(optimizer, resumed, problem)
    for k, p in resumed:
        assert torch.equal(p.detach(), uninterrupted[k]), k


def eval_then_train(optimizer: torch.optim.Optimizer) -> None:
    optimizer.eval()
    optimizer.train()


def test_parameter_without_gradient_is_untouched() -> None:
    assert_untouched_without_grad(SPEC, frozen_shapes=((4,),), between_steps=eval_then_train)


@pytest.mark.parametrize(
    "case",
    [
        # measured at x (eval mode)
        converges("rosenbrock", 2000, {"lr": 0.1, "betas": (0.95, 0.999)}, 1e-2),
        converges("beale", 1000, {"lr": 0.1}, 1e-4),
        converges("logistic", 300, {"lr": 0.1}, 0.15),
    ],
)
def test_converges(case: Convergence) -> None:
    assert_converges(NAME, case)


def test_eval_then_train_restores_the_parameter_exactly() -> None:
    problem = quadratic_problem(seed=5)
    params = make_params(problem)
    optimizer = build_optimizer(with_uniform_decay(SPEC), params)
    for _ in range(7):
        step_once(optimizer, params, problem)
    y = {k: p.detach().clone() for k, p in params}
    optimizer.eval()
    assert all(not torch.equal(p.detach(), y[k]) for k, p in params)
    optimizer.eval()  # idempotent
    optimizer.train()
    optimizer.train()
    for k, p in params:
        assert torch.equal(p.detach(), y[k]), k


def test_eval_mode_holds_x_and_train_mode_holds_y() -> None:
    # y = β1 x + (1 − β1) z, so x = (y − (1 − β1) z) / β1
    problem = quadratic_problem(seed=6)
    params = make_params(problem)
    optimizer = build_optimizer(with_uniform_decay(SPEC), params)
    for _ in range(4):
        step_once(optimizer, params, problem)
    beta1 = SPEC["betas"][0]
    y = {k: p.detach().clone() for k, p in params}
    optimizer.eval()
    for k, p in params:
        z = optimizer.state[p]["z"]
        torch.testing.assert_close(p.detach(), (y[k] - (1 - beta1) * z) / beta1)
    optimizer.train()


def test_step_in_eval_mode_is_refused() -> None:
    p = nn.Parameter(torch.ones(2, dtype=torch.float64))
    optimizer = build_optimizer({"name": NAME}, [p])
    p.grad = torch.ones(2, dtype=torch.float64)
    optimizer.step()
    optimizer.eval()
    with pytest.raises(RuntimeError, match="eval mode"):
        optimizer.step()


def test_first_average_weight_is_one() -> None:
    # c_1 = 1: after one step x = y = z.
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    optimizer = build_optimizer({"name": NAME, "lr": 0.1}, [p])
    p.grad = torch.tensor([0.5, -1.0], dtype=torch.float64)
    optimizer.step()
    y = p.detach().clone()
    torch.testing.assert_close(optimizer.state[p]["z"], y, rtol=0, atol=0)
    optimizer.eval()
    torch.testing.assert_close(p.detach(), y, rtol=0, atol=1e-15)
    optimizer.train()


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({"betas": [0.0, 0.999]}, "optimizer.betas[0]"),
        ({"betas": [0.9, 1.0]}, "optimizer.betas[1]"),
        ({"warmup_steps": -1}, "optimizer.warmup_steps"),
        ({"r": -1}, "optimizer.r"),
    ],
)
def test_bad_settings_are_rejected(bad, path) -> None:
    assert_spec_error({"name": NAME, **bad}, path)


def test_trains_a_tiny_job() -> None:
    train_tiny_job({"name": NAME, "lr": 0.01}, min_accuracy=0.5)
