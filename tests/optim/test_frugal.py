"""`frugal` against the authors' GaloreAdamW (SVD projection; formulas-optimizers.md §17)."""

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
    make_params,
    minimise,
    quadratic_problem,
    step_once,
    train_tiny_job,
    with_uniform_decay,
)
from tests.reference.frugal import reference
from trainlib import build_optimizer

SPEC = {
    "name": "frugal",
    "lr": 0.02,
    "betas": (0.8, 0.99),
    "eps": 1e-3,
    "weight_decay": 0.1,
    "density": 0.5,  # layer.weight 4×3: r = 2 of 3 columns; conv.weight as 2×12: r = 1 of 2 rows
    "update_gap": 3,
    "proj_params_lr_scale": 0.5,
    "inactive_lr_scale": 0.3,
}
W0_6X4: Any = [[0.0] * 4 for _ in range(6)]  # a matrix start (minimise takes nested lists)


def one_step(w0: torch.Tensor, g: torch.Tensor, **settings) -> tuple[torch.Tensor, dict]:
    p = nn.Parameter(w0.clone())
    optimizer = build_optimizer(with_uniform_decay({"name": "frugal", **settings}), [("w", p)])
    p.grad = g.clone()
    optimizer.step()
    return p.detach(), optimizer.state[p]


@pytest.mark.parametrize(
    "spec",
    [
        SPEC,
        {"name": "frugal", "lr": 0.02, "density": 0.5, "update_gap": 4,
         "reset_statistics": False, "inactive_update_rule": "sgd"},
        {"name": "frugal", "lr": 0.02, "update_gap": 4, "proj_side": "reverse_std"},
        {"name": "frugal", "lr": 0.02, "update_gap": 4, "correct_bias": False},
    ],
    ids=["decay-scales", "no-reset-sgd-residual", "reverse_std-density-0.25", "no-bias-correction"],
)  # fmt: skip
def test_matches_the_numpy_reference(spec) -> None:
    settings = {k: v for k, v in spec.items() if k != "name"}
    assert_follows_reference(with_uniform_decay(spec), reference, settings)


def test_worked_example_fixture_e() -> None:
    e0 = torch.tensor([[1.0, 2.0], [0.5, -1.0], [0.0, 1.5]], dtype=torch.float64)
    f1 = torch.tensor([[0.3, -0.1], [0.2, 0.4], [-0.1, 0.1]], dtype=torch.float64)
    theta, state = one_step(e0, f1, lr=0.01, weight_decay=0.01, density=0.5)
    np.testing.assert_allclose(
        theta,
        [[0.9846426896, 2.0012934931], [0.504692689, -1.0184065079], [0.0047426905, 1.4813434945]],
        atol=1e-9,
    )
    np.testing.assert_allclose(state["projector"].abs(), [[0.5257311121, 0.8506508084]], atol=1e-9)
    resid = f1 - f1 @ state["projector"].T @ state["projector"]
    np.testing.assert_allclose(
        resid,
        [
            [0.2618033989, -0.1618033989],
            [-0.0341640786, 0.0211145618],
            [-0.1170820393, 0.0723606798],
        ],
        atol=1e-9,
    )


@pytest.mark.parametrize("proj_type", ["svd", "random", "randperm"])
def test_foreach_and_single_tensor_paths_agree(proj_type) -> None:
    spec = with_uniform_decay({**SPEC, "proj_type": proj_type})
    assert_foreach_matches_single(spec, quadratic_problem(seed=1))


@pytest.mark.parametrize("proj_type", ["svd", "random", "randperm"])
def test_resumes_bit_identically(proj_type) -> None:
    # gap 3, stop at 5: the resumed run refreshes (a new random subspace) at step 7
    spec = with_uniform_decay({**SPEC, "proj_type": proj_type})
    assert_resumes_bit_identically(spec, quadratic_problem(seed=2))


def test_parameter_without_gradient_is_untouched() -> None:
    assert_untouched_without_grad(SPEC, frozen_shapes=((4, 3),))


@pytest.mark.parametrize(
    "case",
    [
        # 1-D parameters are never projected: these exercise FRUGAL's plain AdamW path
        converges("rosenbrock", 2000, {"lr": 0.1, "weight_decay": 0.0}, 1e-6),
        converges("beale", 1000, {"lr": 0.1, "weight_decay": 0.0}, 1e-6),
        converges("logistic", 300, {"lr": 0.1, "weight_decay": 0.0}, 0.1),
    ],
)
def test_converges(case: Convergence) -> None:
    assert_converges("frugal", case)


def test_converges_on_a_matrix_least_squares_problem() -> None:
    # The projected path: W (6×4), half the columns state-full, the rest signSGD; from W = 0
    # (≈ 4.6). signSGD's fixed-size steps leave an lr-sized floor, hence the modest target.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=gen, dtype=torch.float64)
    y = x @ torch.randn(6, 4, generator=gen, dtype=torch.float64)

    def loss_fn(w: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((x @ w - y) ** 2).mean()

    spec = {"name": "frugal", "lr": 0.02, "weight_decay": 0.0, "density": 0.5, "update_gap": 20}
    assert minimise(spec, loss_fn, W0_6X4, 500) < 1e-2


def test_state_full_part_is_low_dimensional_and_reset_at_refresh() -> None:
    gen = torch.Generator().manual_seed(3)
    p = nn.Parameter(torch.randn(8, 4, generator=gen, dtype=torch.float64))
    optimizer = build_optimizer({"name": "frugal", "update_gap": 3}, [("w", p)])
    steps = []
    for _ in range(7):
        p.grad = torch.randn(8, 4, generator=gen, dtype=torch.float64)
        optimizer.step()
        steps.append(int(optimizer.state[p]["step"]))
    assert optimizer.state[p]["exp_avg"].shape == (8, 1)  # r = round(0.25 · 4) columns
    assert optimizer.state[p]["projector"].shape == (1, 4)
    assert steps == [1, 2, 3, 1, 2, 3, 1]  # statistics and bias correction restart


def test_residual_gets_a_sign_update_of_fixed_size() -> None:
    gen = torch.Generator().manual_seed(4)
    w0 = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    g = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    settings = {"lr": 0.1, "density": 0.5, "proj_params_lr_scale": 0.5, "inactive_lr_scale": 0.2}
    with_sign, state = one_step(w0, g, **settings)
    without, _ = one_step(w0, g, inactive_update_rule="no", **settings)
    proj = state["projector"]
    residual = g - g @ proj.T @ proj
    torch.testing.assert_close(with_sign - without, -0.1 * 0.5 * 0.2 * residual.sign())
    # with 'no' (GaLore without scale) the update stays in the state-full subspace
    update = without - w0 * (1 - 0.1 * 0.01)
    torch.testing.assert_close(update @ proj.T @ proj, update)


def test_density_zero_is_sign_sgd_and_a_full_coordinate_subspace_is_adamw() -> None:
    gen = torch.Generator().manual_seed(5)
    w0 = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    g = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    theta, _ = one_step(w0, g, lr=0.1, weight_decay=0.2, density=0.0)
    torch.testing.assert_close(theta, w0 * (1 - 0.1 * 0.2) - 0.1 * g.sign(), rtol=0, atol=1e-15)

    p = nn.Parameter(w0.clone())
    frugal = build_optimizer(
        with_uniform_decay({"name": "frugal", "lr": 0.1, "density": 1.0, "proj_type": "randperm"}),
        [("w", p)],
    )
    q = nn.Parameter(w0.clone())
    adamw = torch.optim.AdamW([q], lr=0.1, weight_decay=0.01)
    for _ in range(4):
        grad = torch.randn(5, 3, generator=gen, dtype=torch.float64)
        p.grad, q.grad = grad.clone(), grad.clone()
        frugal.step()
        adamw.step()
    torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-12, atol=1e-14)


def test_random_subspaces_are_reproducible_from_the_seed() -> None:
    def run(seed: int, proj_type: str) -> list[torch.Tensor]:
        problem = quadratic_problem(seed=6)
        params = make_params(problem)
        spec = {**SPEC, "proj_type": proj_type, "seed": seed}
        optimizer = build_optimizer(with_uniform_decay(spec), params)
        for _ in range(5):
            step_once(optimizer, params, problem)
        return [p.detach().clone() for _, p in params]

    for proj_type in ("random", "randperm"):
        first, again, other = run(0, proj_type), run(0, proj_type), run(1, proj_type)
        assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
        assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_random_projector_is_orthonormal() -> None:
    gen = torch.Generator().manual_seed(7)
    w0 = torch.randn(8, 6, generator=gen, dtype=torch.float64)
    _, state = one_step(w0, torch.randn(8, 6, generator=gen, dtype=torch.float64),
                        density=0.5, proj_type="random")  # fmt: skip
    proj = state["projector"]
    assert proj.shape == (3, 6)
    torch.testing.assert_close(proj @ proj.T, torch.eye(3, dtype=torch.float64))


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({"betas": [0.9, 1.0]}, "optimizer.betas[1]"),
        ({"density": 1.5}, "optimizer.density"),
        ({"update_gap": 0}, "optimizer.update_gap"),
        ({"inactive_update_rule": "adam"}, "optimizer.inactive_update_rule"),
        ({"inactive_lr_scale": -1}, "optimizer.inactive_lr_scale"),
    ],
)
def test_bad_settings_are_rejected(bad, path) -> None:
    assert_spec_error({"name": "frugal", **bad}, path)


def test_trains_a_tiny_job() -> None:
    train_tiny_job({"name": "frugal", "lr": 0.01, "update_gap": 10}, min_accuracy=0.5)
