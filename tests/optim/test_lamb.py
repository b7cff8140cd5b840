"""LAMB: NumPy reference, the formulas file's worked example (§13), trust-ratio properties."""

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
from tests.reference.lamb import reference
from trainlib import build_optimizer

SPECS = [
    {"name": "lamb", "lr": 0.05},  # paper defaults otherwise: λ = 0.01, ε = 1e-6
    {
        "name": "lamb",
        "lr": 0.05,
        "weight_decay": 0.1,
        "betas": (0.8, 0.99),
        "eps": 1e-3,
        "bias_correction": False,
        "norm_bounds": (0.5, 1.5),
    },
    {"name": "lamb", "lr": 0.05, "exclude_1d": True},
]


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("spec", SPECS)
def test_matches_the_numpy_reference(spec: dict, foreach: bool) -> None:
    assert_follows_reference(with_uniform_decay({**spec, "foreach": foreach}), reference)


@pytest.mark.parametrize("foreach", [False, True])
def test_worked_example_fixture_a(foreach: bool) -> None:
    spec = {"name": "lamb", "lr": 0.1, "weight_decay": 0.01, "eps": 1e-6, "foreach": foreach}
    t1, t2 = steps_with_gradients(spec, [1.0, -2.0], [[0.5, -1.0], [-0.3, 0.2]])
    np.testing.assert_allclose(t1, [0.8426669915, -1.8411090801], atol=1e-9)
    np.testing.assert_allclose(t2, [0.7711374765, -1.6516856615], atol=1e-9)


@pytest.mark.parametrize("spec", SPECS)
def test_foreach_and_single_tensor_paths_agree(spec: dict) -> None:
    assert_foreach_matches_single(with_uniform_decay(spec), quadratic_problem(seed=1))


@pytest.mark.parametrize("spec", SPECS)
def test_resumes_bit_identically(spec: dict) -> None:
    assert_resumes_bit_identically(with_uniform_decay(spec), quadratic_problem(seed=2))


@pytest.mark.parametrize("foreach", [False, True])
def test_parameter_without_gradient_is_untouched(foreach: bool) -> None:
    assert_untouched_without_grad(
        {"name": "lamb", "weight_decay": 0.1, "foreach": foreach, "groups": {"no_decay": []}}
    )


# Tuned: lr 0.01, β = (0.5, 0.9), no decay. The trust ratio makes every step η‖θ‖ long, so LAMB
# (without an lr schedule) cannot settle closer than O(η‖θ‖) to a minimum, and steps shrink to 0
# as ‖θ‖ → 0: on Rosenbrock the path along the valley passes the origin, where LAMB stalls at
# loss ≈ 1 (from 12.5). The thresholds are honest about that.
TUNED = {"name": "lamb", "lr": 0.01, "weight_decay": 0.0, "betas": (0.5, 0.9)}


def test_converges_on_rosenbrock_until_it_stalls_at_the_origin() -> None:
    assert minimise(TUNED, rosenbrock, [-1.5, 2.0], 1000) < 1.1  # from 12.5


def test_converges_on_beale() -> None:
    assert minimise(TUNED, beale, [1.0, 1.0], 1000) < 0.05  # from 14.2


def test_converges_on_logistic_regression() -> None:
    assert minimise(TUNED, logistic_loss(), [0.0, 0.0, 0.0], 1000) < 0.02  # from log 2


# --- paper properties ---------------------------------------------------------------------------


def one_step(spec: dict, shapes_scales: list[tuple[tuple[int, ...], float]]) -> list[tuple]:
    gen = torch.Generator().manual_seed(0)
    params = [
        nn.Parameter(torch.randn(*s, generator=gen, dtype=torch.float64) * scale)
        for s, scale in shapes_scales
    ]
    optimizer = build_optimizer(spec, [(f"p{i}", p) for i, p in enumerate(params)])
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, dtype=torch.float64) * 50
    optimizer.step()
    return [(b, p.detach() - b) for b, p in zip(before, params, strict=True)]


@pytest.mark.parametrize("foreach", [False, True])
def test_every_tensor_moves_lr_times_its_norm(foreach: bool) -> None:
    """trust = ‖θ‖/‖u‖, so ‖Δθ‖ = η‖θ‖ per tensor, whatever the gradient scale or layer size."""
    lr = 0.01
    spec = {"name": "lamb", "lr": lr, "weight_decay": 0.1, "foreach": foreach,
            "groups": {"no_decay": []}}  # fmt: skip
    for theta, delta in one_step(spec, [((8, 4), 0.1), ((4,), 3.0), ((2, 3, 2, 2), 20.0)]):
        assert delta.norm().item() == pytest.approx(lr * theta.norm().item(), rel=1e-12)


def test_norm_bounds_clamp_the_parameter_norm() -> None:
    lr = 0.01
    spec = {"name": "lamb", "lr": lr, "norm_bounds": (0.5, 2.0)}
    small, middle, large = one_step(spec, [((5,), 0.01), ((5,), 0.5), ((5,), 100.0)])
    assert small[0].norm() < 0.5 < middle[0].norm() < 2.0 < large[0].norm()
    for (_, delta), phi in zip(
        (small, middle, large), (0.5, middle[0].norm().item(), 2.0), strict=True
    ):
        assert delta.norm().item() == pytest.approx(lr * phi, rel=1e-12)


def test_zero_norm_tensor_takes_the_plain_step_and_exclude_1d_skips_vectors() -> None:
    """trust = 1 when ‖θ‖ = 0 (a zero-initialised bias still moves); exclude_1d: trust = 1."""
    lr = 0.01
    for spec, vector in (
        ({"name": "lamb", "lr": lr}, torch.zeros(3, dtype=torch.float64)),
        ({"name": "lamb", "lr": lr, "exclude_1d": True}, torch.full((3,), 7.0).double()),
    ):
        b = nn.Parameter(vector.clone())
        optimizer = build_optimizer({**spec, "groups": {"no_decay": []}}, [("b", b)])
        b.grad = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
        optimizer.step()
        # first step: r = g/(|g| + ε') (bias-corrected), u = r + λθ
        u = torch.sign(b.grad) * (b.grad.abs() / (b.grad.abs() + 1e-6)) + 0.01 * vector
        torch.testing.assert_close(b.detach(), vector - lr * u, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("foreach", [False, True])
def test_without_decay_bias_correction_cancels_in_the_trust_ratio(foreach: bool) -> None:
    """λ = 0 and ε → 0: both corrections scale u uniformly, and the trust ratio removes that."""
    problem = quadratic_problem(seed=3)
    base = {"name": "lamb", "lr": 0.02, "weight_decay": 0.0, "eps": 1e-300, "foreach": foreach}
    on = trajectory({**base, "bias_correction": True}, problem, 10)
    off = trajectory({**base, "bias_correction": False}, problem, 10)
    assert_matches_reference(on, off, rtol=1e-12, atol=1e-14)


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("optimizer", "path"),
    [
        ({"name": "lamb", "betas": [1.0, 0.999]}, "optimizer.betas[0]"),
        ({"name": "lamb", "eps": 0}, "optimizer.eps"),
        ({"name": "lamb", "norm_bounds": [-1, 10]}, "optimizer.norm_bounds[0]"),
        ({"name": "lamb", "norm_bounds": [10, 1]}, "optimizer"),
    ],
)
def test_bad_settings_are_rejected(optimizer: dict, path: str) -> None:
    assert_spec_error(optimizer, path)


def test_trains_a_tiny_job() -> None:
    train_tiny_job({"name": "lamb", "lr": 0.02}, min_accuracy=0.5)
