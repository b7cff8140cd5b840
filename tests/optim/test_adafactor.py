"""Adafactor: NumPy reference, the formulas file's worked examples (§9), sublinear memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.optim.helpers import (
    assert_follows_reference,
    assert_foreach_matches_single,
    assert_matches_reference,
    assert_resumes_bit_identically,
    assert_spec_error,
    assert_untouched_without_grad,
    beale,
    logistic_loss,
    minimise,
    quadratic_problem,
    rosenbrock,
    steps_with_gradients,
    train_tiny_job,
    trajectory,
    with_uniform_decay,
)
from tests.reference.adafactor import reference
from trainlib import build_optimizer

SPECS = [
    {"name": "adafactor", "weight_decay": 0.1},  # paper defaults: relative step, no momentum
    {"name": "adafactor", "warmup_init": True, "beta1": 0.5, "weight_decay": 0.05},
    {
        "name": "adafactor",
        "relative_step": False,
        "lr": 0.05,
        "scale_parameter": False,
        "beta1": 0.9,
        "eps": (1e-20, 1e-2),
        "clip_threshold": 0.5,
        "decay_rate": -0.6,
        "weight_decay": 0.05,
    },
]


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("spec", SPECS)
def test_matches_the_numpy_reference(spec: dict, foreach: bool) -> None:
    assert_follows_reference(with_uniform_decay({**spec, "foreach": foreach}), reference)


@pytest.mark.parametrize("foreach", [False, True])
def test_worked_example_fixture_c_matrix(foreach: bool) -> None:
    a1, a2 = steps_with_gradients(
        {"name": "adafactor", "foreach": foreach},
        [[0.5, -1, 2], [1.5, 0.2, -0.3]],
        [[[0.1, -0.2, 0.3], [0.05, 0.4, -0.1]], [[-0.2, 0.1, 0], [0.3, -0.1, 0.2]]],
    )
    np.testing.assert_allclose(
        a1,
        [[0.4852160342, -0.9926080171, 1.9843192362], [1.4933406717, 0.1866813435, -0.2952911438]],
        atol=1e-9,
    )
    # entry [0, 2] stays: its gradient is 0 at step 2
    np.testing.assert_allclose(
        a2,
        [[0.4983172309, -0.9985682184, 1.9843192362], [1.4784512446, 0.1911971642, -0.3062570298]],
        atol=1e-9,
    )


@pytest.mark.parametrize("foreach", [False, True])
def test_worked_example_fixture_a_vector(foreach: bool) -> None:
    t1, t2 = steps_with_gradients(
        {"name": "adafactor", "foreach": foreach}, [1.0, -2.0], [[0.5, -1.0], [-0.3, 0.2]]
    )
    np.testing.assert_allclose(t1, [0.9841886117, -1.9841886117], atol=1e-9)
    np.testing.assert_allclose(t2, [0.9960049282, -1.9888651106], atol=1e-9)


@pytest.mark.parametrize("spec", SPECS)
def test_foreach_and_single_tensor_paths_agree(spec: dict) -> None:
    assert_foreach_matches_single(with_uniform_decay(spec), quadratic_problem(seed=1))


@pytest.mark.parametrize("spec", SPECS)
def test_resumes_bit_identically(spec: dict) -> None:
    assert_resumes_bit_identically(with_uniform_decay(spec), quadratic_problem(seed=2))


@pytest.mark.parametrize("foreach", [False, True])
def test_parameter_without_gradient_is_untouched(foreach: bool) -> None:
    assert_untouched_without_grad(
        {"name": "adafactor", "beta1": 0.9, "weight_decay": 0.1, "foreach": foreach}
    )


# Tuned: a fixed lr with momentum (β1 = 0.9); the paper's relative step is capped at 1e-2·RMS(x).
TUNED = {"name": "adafactor", "relative_step": False, "lr": 0.02, "scale_parameter": False,
         "beta1": 0.9}  # fmt: skip


def test_converges_on_rosenbrock() -> None:
    assert minimise(TUNED, rosenbrock, [-1.5, 2.0], 1000) < 1e-2  # from 12.5


def test_converges_on_beale() -> None:
    assert minimise(TUNED, beale, [1.0, 1.0], 1000) < 1e-6  # from 14.2


def test_converges_on_logistic_regression() -> None:
    assert minimise(TUNED, logistic_loss(), [0.0, 0.0, 0.0], 1000) < 0.1  # from log 2


def test_paper_defaults_make_progress_on_beale() -> None:
    assert minimise({"name": "adafactor"}, beale, [1.0, 1.0], 1000) < 1e-2


# --- paper properties ---------------------------------------------------------------------------


def state_numel(optimizer: torch.optim.Optimizer, p: torch.Tensor) -> dict[str, int]:
    return {k: v.numel() for k, v in optimizer.state[p].items() if k != "step"}


@pytest.mark.parametrize("foreach", [False, True])
def test_second_moment_of_a_matrix_is_sublinear(foreach: bool) -> None:
    n, m = 64, 48
    w = nn.Parameter(torch.randn(n, m, dtype=torch.float64))
    optimizer = build_optimizer({"name": "adafactor", "foreach": foreach}, [("w", w)])
    w.grad = torch.randn(n, m, dtype=torch.float64)
    optimizer.step()
    # row and column factors only: n + m numbers, no n×m tensor (β1 = 0: no momentum buffer)
    assert state_numel(optimizer, w) == {"exp_avg_sq_row": n, "exp_avg_sq_col": m}
    assert sum(state_numel(optimizer, w).values()) == n + m


def test_kernels_factor_their_last_two_dims_and_vectors_keep_a_full_moment() -> None:
    conv = nn.Parameter(torch.randn(8, 4, 3, 5, dtype=torch.float64))
    bias = nn.Parameter(torch.randn(8, dtype=torch.float64))
    optimizer = build_optimizer({"name": "adafactor", "beta1": 0.9}, [("c", conv), ("b", bias)])
    conv.grad, bias.grad = torch.randn_like(conv), torch.randn_like(bias)
    optimizer.step()
    state = optimizer.state
    assert state[conv]["exp_avg_sq_row"].shape == (8, 4, 3)
    assert state[conv]["exp_avg_sq_col"].shape == (8, 4, 5)
    assert state[conv]["exp_avg"].shape == conv.shape  # momentum is a full tensor when on
    assert state[bias]["exp_avg_sq"].shape == (8,)


def test_factored_estimate_is_exact_for_a_rank_one_squared_gradient() -> None:
    """First step (β̂2_1 = 0): if G² = a bᵀ, then V̂ = R Cᵀ / mean(R) = G², so U = sign(G)."""
    a = torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64)
    b = torch.tensor([0.25, 1.0], dtype=torch.float64)
    g = torch.outer(a, b).sqrt() * torch.tensor([[1.0, -1.0]] * 3, dtype=torch.float64)
    w = nn.Parameter(torch.zeros(3, 2, dtype=torch.float64))
    optimizer = build_optimizer(
        {"name": "adafactor", "relative_step": False, "lr": 0.1, "scale_parameter": False},
        [("w", w)],
    )
    w.grad = g
    optimizer.step()
    np.testing.assert_allclose(w.detach().numpy(), -0.1 * np.sign(g.numpy()), atol=1e-12)


def test_update_clipping_caps_the_rms_of_the_step_at_d() -> None:
    """Steady tiny gradients give U = ±1 (RMS 1 < d: unclipped); after nine of them a sudden
    large gradient meets a lagging V (β̂2_10 ≈ 0.84), RMS(U) ≈ 2.5 > d, and the step is clipped."""
    lr, d = 0.01, 1.5
    w = nn.Parameter(torch.ones(4, 5, dtype=torch.float64))
    spec = {"name": "adafactor", "relative_step": False, "lr": lr, "scale_parameter": False,
            "clip_threshold": d}  # fmt: skip
    optimizer = build_optimizer(spec, [("w", w)])
    rms_steps = []
    for g in [1e-3] * 9 + [1.0]:
        before = w.detach().clone()
        w.grad = torch.full((4, 5), g, dtype=torch.float64)
        optimizer.step()
        rms_steps.append((w.detach() - before).pow(2).mean().sqrt().item())
    np.testing.assert_allclose(rms_steps[:9], lr, rtol=1e-9)
    assert rms_steps[9] == pytest.approx(lr * d, rel=1e-12)


def test_relative_step_follows_the_schedule_and_warmup() -> None:
    """ρ_t = min(1e-2, 1/sqrt(t)); warmup_init: min(1e-6 t, 1/sqrt(t)). Sign-like first steps."""
    for spec, rho1 in (
        ({"name": "adafactor"}, 1e-2),
        ({"name": "adafactor", "warmup_init": True}, 1e-6),
    ):
        x = nn.Parameter(torch.tensor([2.0, -2.0], dtype=torch.float64))  # RMS(x) = 2
        optimizer = build_optimizer({**spec, "scale_parameter": True}, [("x", x)])
        x.grad = torch.tensor([0.5, -0.5], dtype=torch.float64)
        optimizer.step()
        # U = g/|g| = ±1 (RMS 1, unclipped), α = RMS(x)·ρ_1
        np.testing.assert_allclose(x.detach().numpy(), [2 - 2 * rho1, -2 + 2 * rho1], rtol=1e-12)


def test_lr_is_ignored_while_relative_step_is_on() -> None:
    problem = quadratic_problem()
    a = trajectory({"name": "adafactor", "lr": 0.5}, problem, 3)
    b = trajectory({"name": "adafactor", "lr": 1e-4}, problem, 3)
    assert_matches_reference(a, b, rtol=0, atol=0)


def test_zero_gradient_matrix_gives_no_update() -> None:
    w = nn.Parameter(torch.randn(3, 4, dtype=torch.float64))
    before = w.detach().clone()
    optimizer = build_optimizer({"name": "adafactor"}, [("w", w)])
    w.grad = torch.zeros(3, 4, dtype=torch.float64)
    optimizer.step()
    assert torch.equal(w.detach(), before)


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("optimizer", "path"),
    [
        ({"name": "adafactor", "decay_rate": 0.5}, "optimizer.decay_rate"),
        ({"name": "adafactor", "beta1": 1.0}, "optimizer.beta1"),
        ({"name": "adafactor", "eps": [0.0, 1e-3]}, "optimizer.eps[0]"),
        ({"name": "adafactor", "clip_threshold": 0}, "optimizer.clip_threshold"),
        ({"name": "adafactor", "warmup_init": True, "relative_step": False}, "optimizer"),
    ],
)
def test_bad_settings_are_rejected(optimizer: dict, path: str) -> None:
    assert_spec_error(optimizer, path)


def test_trains_a_tiny_job() -> None:
    train_tiny_job({"name": "adafactor"}, min_accuracy=0.5)
