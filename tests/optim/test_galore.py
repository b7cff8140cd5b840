"""`galore` against the authors' GaLoreAdamW + GaLoreProjector (formulas-optimizers.md §18)."""

from __future__ import annotations

import itertools
import math
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
    minimise,
    quadratic_problem,
    train_tiny_job,
    with_uniform_decay,
)
from tests.reference.galore import reference
from trainlib import build_optimizer

SPEC = {
    "name": "galore",
    "lr": 0.05,
    "betas": (0.8, 0.99),
    "eps": 1e-3,
    "weight_decay": 0.1,
    "rank": 2,
    "update_proj_gap": 3,
    "scale": 0.5,
}
W0_6X4: Any = [[0.0] * 4 for _ in range(6)]  # a matrix start (minimise takes nested lists)
E0 = [[1.0, 2.0], [0.5, -1.0], [0.0, 1.5]]
F = [
    [[0.3, -0.1], [0.2, 0.4], [-0.1, 0.1]],
    [[0.1, 0.2], [-0.3, 0.1], [0.2, 0.0]],
    [[0.0, 0.3], [0.1, -0.2], [0.4, 0.1]],
]


class InjectedGradients:
    """A problem for the NumPy reference whose gradients are given instead of computed."""

    def __init__(self, init: dict[str, np.ndarray], grads: list[dict[str, np.ndarray]]) -> None:
        self.init = init
        self._grads = iter(grads)

    def grad(self, theta: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return next(self._grads)


def run_fixture_e(**settings) -> tuple[list[np.ndarray], torch.optim.Optimizer, nn.Parameter]:
    p = nn.Parameter(torch.tensor(E0, dtype=torch.float64))
    optimizer = build_optimizer({"name": "galore", **settings}, [("w", p)])
    out = []
    for g in F:
        p.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step()
        out.append(p.detach().numpy().copy())
    return out, optimizer, p


@pytest.mark.parametrize(
    "spec",
    [
        SPEC,
        {"name": "galore", "lr": 0.05, "rank": 2, "update_proj_gap": 4, "proj_type": "full"},
        {"name": "galore", "lr": 0.05, "rank": 1, "update_proj_gap": 4, "proj_type": "reverse_std"},
        {"name": "galore", "lr": 0.02, "rank": 8, "update_proj_gap": 5, "proj_type": "left"},
    ],
    ids=["std-decay-eps-scale", "full", "reverse_std", "left-full-rank"],
)
def test_matches_the_numpy_reference(spec) -> None:
    settings = {k: v for k, v in spec.items() if k != "name"}
    # the problem: layer.weight 4×3 and conv.weight (projected as 2×12)
    assert_follows_reference(with_uniform_decay(spec), reference, settings)


def test_worked_example_fixture_e() -> None:
    settings = {"lr": 0.01, "rank": 1, "scale": 0.25, "update_proj_gap": 2}
    theta, optimizer, p = run_fixture_e(**settings)
    np.testing.assert_allclose(
        theta[0],
        [[0.998686244, 1.9978742982], [0.4986857655, -1.002126476], [-0.0013130499, 1.4978754407]],
        atol=1e-9,
    )
    # steps 2–3 (P refreshed before step 3) have no printed values: the NumPy reference
    fixture = InjectedGradients({"w": np.array(E0)}, [{"w": np.array(g)} for g in F])
    expected = reference(settings, fixture, 3)
    for ours, ref in zip(theta, expected, strict=True):
        np.testing.assert_allclose(ours, ref["w"], atol=1e-12)
    assert optimizer.state[p]["exp_avg"].shape == (3, 1)


def test_foreach_and_single_tensor_paths_agree() -> None:
    assert_foreach_matches_single(with_uniform_decay(SPEC), quadratic_problem(seed=1))


@pytest.mark.parametrize("proj_type", ["std", "full"])
def test_resumes_bit_identically(proj_type) -> None:
    # gap 3 with a stop at step 5: the resumed run refreshes P from the state it was given
    spec = with_uniform_decay({**SPEC, "proj_type": proj_type})
    assert_resumes_bit_identically(spec, quadratic_problem(seed=2))


def test_parameter_without_gradient_is_untouched() -> None:
    assert_untouched_without_grad(SPEC, frozen_shapes=((4, 3),))


@pytest.mark.parametrize(
    "case",
    [
        # 1-D parameters are never projected: these exercise GaLore's plain AdamW path
        converges("rosenbrock", 2000, {"lr": 0.1}, 1e-6),
        converges("beale", 1000, {"lr": 0.1}, 1e-6),
        converges("logistic", 300, {"lr": 0.1}, 0.1),
    ],
)
def test_converges(case: Convergence) -> None:
    assert_converges("galore", case)


def test_converges_on_a_matrix_least_squares_problem() -> None:
    # The projected path: W (6×4), rank 2 of 4, L = ½ mean ‖XW − Y‖² from W = 0 (≈ 4.6).
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=gen, dtype=torch.float64)
    y = x @ torch.randn(6, 4, generator=gen, dtype=torch.float64)

    def loss_fn(w: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((x @ w - y) ** 2).mean()

    spec = {"name": "galore", "lr": 0.05, "rank": 2, "update_proj_gap": 50, "scale": 1.0}
    assert minimise(spec, loss_fn, W0_6X4, 500) < 1e-4


def test_projector_is_orthonormal_and_refreshed_every_gap_steps() -> None:
    gen = torch.Generator().manual_seed(3)
    p = nn.Parameter(torch.randn(6, 4, generator=gen, dtype=torch.float64))
    optimizer = build_optimizer({"name": "galore", "rank": 2, "update_proj_gap": 3}, [("w", p)])
    projectors = []
    for _ in range(7):
        p.grad = torch.randn(6, 4, generator=gen, dtype=torch.float64)
        optimizer.step()
        projectors.append(optimizer.state[p]["projector"].clone())
    proj = projectors[0]
    assert proj.shape == (2, 4)  # rows ≥ cols: right projector
    torch.testing.assert_close(proj @ proj.T, torch.eye(2, dtype=torch.float64))
    # k = 0, 3, 6 recompute P (k = the step count before the step), the others keep it
    changed = [not torch.equal(a, b) for a, b in itertools.pairwise(projectors)]
    assert changed == [False, False, True, False, False, True]
    assert optimizer.state[p]["exp_avg"].shape == (6, 2)  # moments in the rank-2 space


def test_update_lies_in_the_projected_subspace_and_decay_comes_after() -> None:
    gen = torch.Generator().manual_seed(4)
    w0 = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    g = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    p = nn.Parameter(w0.clone())
    spec = {"name": "galore", "lr": 0.1, "rank": 1, "scale": 0.5, "weight_decay": 0.2}
    optimizer = build_optimizer(spec, [("w", p)])
    p.grad = g.clone()
    optimizer.step()
    proj = optimizer.state[p]["projector"]  # 1×3
    update = p.detach() / (1 - 0.1 * 0.2) - w0  # undo the decay applied after the update
    torch.testing.assert_close(update @ proj.T @ proj, update)  # rows in span(P)
    # first step: m/(sqrt(v)+ε) = sign(R)·(1−ε′), s = η·sqrt(1−β2)/(1−β1)
    r = g @ proj.T
    size = 0.1 * math.sqrt(1 - 0.999) / (1 - 0.9)
    expected = -size * 0.5 * (0.1 * r / (math.sqrt(0.001) * r.abs() + 1e-6)) @ proj
    torch.testing.assert_close(update, expected, rtol=1e-10, atol=1e-14)


def test_projector_does_not_depend_on_the_svd_sign_convention() -> None:
    gen = torch.Generator().manual_seed(5)
    g = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    projectors = []
    for sign in (1.0, -1.0):  # singular vectors of −G are those of G up to sign
        p = nn.Parameter(torch.zeros(6, 4, dtype=torch.float64))
        optimizer = build_optimizer({"name": "galore", "rank": 3}, [("w", p)])
        p.grad = sign * g
        optimizer.step()
        projectors.append(optimizer.state[p]["projector"])
    torch.testing.assert_close(projectors[0], projectors[1], rtol=0, atol=1e-14)


def test_vectors_and_the_classifier_are_not_projected() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    optimizer = build_optimizer({"name": "galore", "rank": 2}, model)
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    assert "projector" in optimizer.state[model[0].weight]
    for p in (model[0].bias, model[2].weight, model[2].bias):
        assert "projector" not in optimizer.state[p]
        assert optimizer.state[p]["exp_avg"].shape == p.shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lower_precision_parameters(dtype) -> None:
    p = nn.Parameter(torch.randn(6, 4).to(dtype))
    optimizer = build_optimizer({"name": "galore", "rank": 2}, [("w", p)])
    p.grad = torch.randn(6, 4).to(dtype)
    optimizer.step()
    assert p.dtype == dtype and torch.isfinite(p).all()
    assert optimizer.state[p]["projector"].dtype == dtype


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({"betas": [1.0, 0.999]}, "optimizer.betas[0]"),
        ({"rank": 0}, "optimizer.rank"),
        ({"update_proj_gap": 0}, "optimizer.update_proj_gap"),
        ({"scale": -1}, "optimizer.scale"),
        ({"proj_type": "diagonal"}, "optimizer.proj_type"),
    ],
)
def test_bad_settings_are_rejected(bad, path) -> None:
    assert_spec_error({"name": "galore", **bad}, path)


def test_trains_a_tiny_job() -> None:
    train_tiny_job(
        {"name": "galore", "lr": 0.01, "rank": 8, "update_proj_gap": 10}, min_accuracy=0.5
    )
