"""NovoGrad: NumPy reference, the formulas file's worked examples (§12), layer-wise moments."""

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
from tests.reference.novograd import reference
from trainlib import build_optimizer

SPECS = [
    {"name": "novograd", "lr": 0.05},
    {
        "name": "novograd",
        "lr": 0.05,
        "weight_decay": 0.01,
        "betas": (0.9, 0.95),
        "eps": 1e-3,
        "grad_averaging": True,
        "amsgrad": True,
    },
    {"name": "novograd", "lr": 0.05, "weight_decay": 1e-3, "luc": True, "luc_trust": 0.02},
]


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("spec", SPECS)
def test_matches_the_numpy_reference(spec: dict, foreach: bool) -> None:
    assert_follows_reference(with_uniform_decay({**spec, "foreach": foreach}), reference)


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize(
    ("decay", "theta1", "theta2"),
    [
        (0.0, [0.9552786409, -1.9105572817], [0.9398698675, -1.8436377112]),
        (1e-3, [0.9551786409, -1.9103572817], [0.9395793496, -1.8430566755]),
    ],
)
def test_worked_examples_fixture_a(decay: float, theta1: list, theta2: list, foreach: bool) -> None:
    t1, t2 = steps_with_gradients(
        {"name": "novograd", "lr": 0.1, "weight_decay": decay, "foreach": foreach},
        [1.0, -2.0],
        [[0.5, -1.0], [-0.3, 0.2]],
    )
    np.testing.assert_allclose(t1, theta1, atol=1e-9)
    np.testing.assert_allclose(t2, theta2, atol=1e-9)


@pytest.mark.parametrize("spec", SPECS)
def test_foreach_and_single_tensor_paths_agree(spec: dict) -> None:
    assert_foreach_matches_single(with_uniform_decay(spec), quadratic_problem(seed=1))


@pytest.mark.parametrize("spec", SPECS)
def test_resumes_bit_identically(spec: dict) -> None:
    assert_resumes_bit_identically(with_uniform_decay(spec), quadratic_problem(seed=2))


@pytest.mark.parametrize("foreach", [False, True])
def test_parameter_without_gradient_is_untouched(foreach: bool) -> None:
    assert_untouched_without_grad(
        {"name": "novograd", "weight_decay": 0.1, "foreach": foreach, "groups": {"no_decay": []}}
    )


# Tuned: lr 0.01 and β2 = 0.99 (the default β2 = 0.98 tracks ‖g‖² too closely on Beale).
TUNED = {"name": "novograd", "lr": 0.01, "betas": (0.9, 0.99)}


def test_converges_on_rosenbrock() -> None:
    assert minimise(TUNED, rosenbrock, [-1.5, 2.0], 1000) < 1e-3  # from 12.5


def test_converges_on_beale() -> None:
    assert minimise(TUNED, beale, [1.0, 1.0], 1000) < 1e-6  # from 14.2


def test_converges_on_logistic_regression() -> None:
    assert minimise(TUNED, logistic_loss(), [0.0, 0.0, 0.0], 1000) < 0.05  # from log 2


# --- paper properties ---------------------------------------------------------------------------


@pytest.mark.parametrize("foreach", [False, True])
def test_second_moment_is_one_number_per_layer(foreach: bool) -> None:
    w = nn.Parameter(torch.randn(6, 5, dtype=torch.float64))
    optimizer = build_optimizer({"name": "novograd", "foreach": foreach}, [("w", w)])
    w.grad = torch.randn(6, 5, dtype=torch.float64)
    optimizer.step()
    state = optimizer.state[w]
    assert state["exp_avg_sq"].shape == ()
    assert state["exp_avg_sq"].item() == pytest.approx(w.grad.pow(2).sum().item(), rel=1e-12)
    assert state["exp_avg"].shape == w.shape


@pytest.mark.parametrize("foreach", [False, True])
def test_invariant_to_rescaling_one_layers_gradients(foreach: bool) -> None:
    """Normalising by each layer's own ‖g‖ makes the trajectory blind to a per-layer gradient
    scale (λ = 0, ε negligible): multiplying one tensor's gradients by 1000 changes nothing."""
    gen = torch.Generator().manual_seed(0)
    grads = [(torch.randn(3, 2, generator=gen, dtype=torch.float64),
              torch.randn(4, generator=gen, dtype=torch.float64)) for _ in range(6)]  # fmt: skip
    results = []
    for scale in (1.0, 1000.0):
        a = nn.Parameter(torch.ones(3, 2, dtype=torch.float64))
        b = nn.Parameter(torch.ones(4, dtype=torch.float64))
        spec = {"name": "novograd", "lr": 0.1, "eps": 1e-300, "foreach": foreach}
        optimizer = build_optimizer(spec, [("a", a), ("b", b)])
        for ga, gb in grads:
            a.grad, b.grad = ga.clone(), gb * scale
            optimizer.step()
        results.append((a.detach().clone(), b.detach().clone()))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-12, atol=1e-14)


def test_first_step_is_the_normalised_gradient() -> None:
    """v_1 = ‖g‖² (no (1 − β2) factor) and m_1 = g/‖g‖ + λθ, as the paper initialises them."""
    w = nn.Parameter(torch.tensor([3.0, -4.0], dtype=torch.float64))
    spec = {"name": "novograd", "lr": 0.5, "weight_decay": 0.1, "eps": 1e-300,
            "groups": {"no_decay": []}}  # fmt: skip
    optimizer = build_optimizer(spec, [("w", w)])
    w.grad = torch.tensor([6.0, 8.0], dtype=torch.float64)  # ‖g‖ = 10
    optimizer.step()
    expected = np.array([3.0, -4.0]) - 0.5 * (np.array([0.6, 0.8]) + 0.1 * np.array([3.0, -4.0]))
    np.testing.assert_allclose(w.detach().numpy(), expected, rtol=1e-14)


def test_zero_gradients_restart_the_second_moment() -> None:
    """NeMo's `v == 0` test: after only zero gradients, the first non-zero one sets v = ‖g‖²."""
    w = nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))
    optimizer = build_optimizer({"name": "novograd"}, [("w", w)])
    w.grad = torch.zeros(2, dtype=torch.float64)
    optimizer.step()
    assert torch.equal(w.detach(), torch.ones(2, dtype=torch.float64))
    w.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)
    optimizer.step()
    assert optimizer.state[w]["exp_avg_sq"].item() == 25.0


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("optimizer", "path"),
    [
        ({"name": "novograd", "betas": [0.95, 1.0]}, "optimizer.betas[1]"),
        ({"name": "novograd", "eps": 0}, "optimizer.eps"),
        ({"name": "novograd", "luc_trust": -1}, "optimizer.luc_trust"),
    ],
)
def test_bad_settings_are_rejected(optimizer: dict, path: str) -> None:
    assert_spec_error(optimizer, path)


def test_trains_a_tiny_job() -> None:
    train_tiny_job({"name": "novograd", "lr": 0.01}, min_accuracy=0.5)
