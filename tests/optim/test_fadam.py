"""FAdam: NumPy reference, the formulas file's worked example (§10), clipping and the zero guard."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.optim.helpers import (
    assert_follows_reference,
    assert_foreach_matches_single,
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
    with_uniform_decay,
)
from tests.reference.fadam import reference
from trainlib import build_optimizer

SPECS = [
    {"name": "fadam"},  # the ports' defaults, λ = 0.1
    {
        "name": "fadam",
        "lr": 0.05,
        "weight_decay": 0.2,
        "betas": (0.8, 0.99),
        "eps": 1e-3,
        "clip_threshold": 0.5,
        "p": 0.4,
    },
]


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("spec", SPECS)
def test_matches_the_numpy_reference(spec: dict, foreach: bool) -> None:
    assert_follows_reference(with_uniform_decay({**spec, "foreach": foreach}), reference)


@pytest.mark.parametrize("foreach", [False, True])
def test_worked_example_fixture_a(foreach: bool) -> None:
    t1, t2 = steps_with_gradients(
        {"name": "fadam", "lr": 0.1, "weight_decay": 0.1, "foreach": foreach},
        [1.0, -2.0],
        [[0.5, -1.0], [-0.3, 0.2]],
    )
    np.testing.assert_allclose(t1, [0.9800000002, -1.98], atol=1e-9)
    np.testing.assert_allclose(t2, [0.9690216692, -1.9630811426], atol=1e-9)


@pytest.mark.parametrize("spec", SPECS)
def test_foreach_and_single_tensor_paths_agree(spec: dict) -> None:
    assert_foreach_matches_single(with_uniform_decay(spec), quadratic_problem(seed=1))


@pytest.mark.parametrize("spec", SPECS)
def test_resumes_bit_identically(spec: dict) -> None:
    assert_resumes_bit_identically(with_uniform_decay(spec), quadratic_problem(seed=2))


@pytest.mark.parametrize("foreach", [False, True])
def test_parameter_without_gradient_is_untouched(foreach: bool) -> None:
    assert_untouched_without_grad({"name": "fadam", "foreach": foreach, "groups": {"no_decay": []}})


# Tuned: lr 0.05 without decay (the preconditioned decay would pull towards 0, not the minimum).
TUNED = {"name": "fadam", "lr": 0.05, "weight_decay": 0.0}


def test_converges_on_rosenbrock() -> None:
    assert minimise(TUNED, rosenbrock, [-1.5, 2.0], 1000) < 1e-2  # from 12.5


def test_converges_on_beale() -> None:
    assert minimise(TUNED, beale, [1.0, 1.0], 1000) < 1e-6  # from 14.2


def test_converges_on_logistic_regression() -> None:
    assert minimise(TUNED, logistic_loss(), [0.0, 0.0, 0.0], 1000) < 0.1  # from log 2


# --- properties ---------------------------------------------------------------------------------


@pytest.mark.parametrize("foreach", [False, True])
def test_natural_gradient_and_decay_are_clipped_to_rms_c(foreach: bool) -> None:
    """β1 = 0 makes the step η(ḡ + λw̄); each part has RMS ≤ c, so RMS(step) ≤ η c (1 + λ)."""
    c, lr, lam = 0.3, 0.1, 0.5
    w = nn.Parameter(torch.randn(5, 4, dtype=torch.float64) * 10)
    spec = {"name": "fadam", "lr": lr, "weight_decay": lam, "betas": (0.0, 0.9),
            "clip_threshold": c, "foreach": foreach, "groups": {"no_decay": []}}  # fmt: skip
    optimizer = build_optimizer(spec, [("w", w)])
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        before = w.detach().clone()
        w.grad = torch.randn(5, 4, dtype=torch.float64, generator=gen) * 100
        optimizer.step()
        rms = (w.detach() - before).pow(2).mean().sqrt().item()
        assert rms <= lr * c * (1 + lam) * (1 + 1e-12)


def test_first_step_is_sign_descent() -> None:
    """β̂2_1 = 0 gives F = g², so with p = 1/2, ε → 0, β1 = 0 the first ḡ is sign(g)."""
    w = nn.Parameter(torch.tensor([0.3, -2.0, 5.0], dtype=torch.float64))
    spec = {"name": "fadam", "lr": 0.1, "weight_decay": 0.0, "betas": (0.0, 0.999),
            "eps": 1e-300}  # fmt: skip
    optimizer = build_optimizer(spec, [("w", w)])
    w.grad = torch.tensor([1e-4, -3.0, 40.0], dtype=torch.float64)
    optimizer.step()
    np.testing.assert_allclose(w.detach().numpy(), [0.2, -1.9, 4.9], atol=1e-12)


@pytest.mark.parametrize("foreach", [False, True])
def test_all_zero_first_gradient_gives_no_nan(foreach: bool) -> None:
    """The ports' 0/0 at a zero first gradient: here ḡ = w̄ = 0 there, so θ stays finite."""
    w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    v = nn.Parameter(torch.tensor([0.5, 0.5], dtype=torch.float64))
    optimizer = build_optimizer(
        {"name": "fadam", "foreach": foreach, "groups": {"no_decay": []}}, [("w", w), ("v", v)]
    )
    w.grad = torch.zeros(2, dtype=torch.float64)
    v.grad = torch.tensor([0.0, 1.0], dtype=torch.float64)
    optimizer.step()
    assert torch.equal(w.detach(), torch.tensor([1.0, -2.0], dtype=torch.float64))
    assert torch.isfinite(v).all()  # ε_t > 0 there: only an all-zero gradient meets 0/0
    w.grad = torch.tensor([0.1, 0.2], dtype=torch.float64)
    optimizer.step()
    assert torch.isfinite(w).all()
    assert not torch.equal(w.detach(), torch.tensor([1.0, -2.0], dtype=torch.float64))


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("optimizer", "path"),
    [
        ({"name": "fadam", "betas": [0.9, 1.0]}, "optimizer.betas[1]"),
        ({"name": "fadam", "betas": [-0.1, 0.9]}, "optimizer.betas[0]"),
        ({"name": "fadam", "clip_threshold": 0}, "optimizer.clip_threshold"),
        ({"name": "fadam", "p": 0}, "optimizer.p"),
        ({"name": "fadam", "eps": -1e-8}, "optimizer.eps"),
        ({"name": "fadam", "weight_decay": -0.1}, "optimizer.weight_decay"),
    ],
)
def test_bad_settings_are_rejected(optimizer: dict, path: str) -> None:
    assert_spec_error(optimizer, path)


def test_trains_a_tiny_job() -> None:
    train_tiny_job({"name": "fadam", "lr": 3e-3}, min_accuracy=0.5)
