"""`muon` against Keller Jordan's Muon (formulas-optimizers.md §19), NS5 run in float64."""

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
    minimise,
    quadratic_problem,
    train_tiny_job,
    with_uniform_decay,
)
from tests.reference.muon import reference
from trainlib import build_optimizer
from trainlib.optim.muon import newton_schulz5

SPEC = {
    "name": "muon",
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 0.1,
    "adamw_lr": 0.02,
    "adamw_betas": (0.8, 0.9),
    "adamw_eps": 1e-4,
}
W0_6X4: Any = [[0.0] * 4 for _ in range(6)]  # a matrix start (minimise takes nested lists)
D0 = [[1.0, 2.0, 0.0], [0.5, -1.0, 1.0]]
K1 = [[0.3, -0.1, 0.2], [0.0, 0.4, -0.2]]


def p5(x: np.ndarray, steps: int = 5) -> np.ndarray:
    for _ in range(steps):
        x = 3.4445 * x - 4.7750 * x**3 + 2.0315 * x**5
    return x


def one_step(w0, g, **settings) -> torch.Tensor:
    p = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    optimizer = build_optimizer({"name": "muon", **settings}, [("w", p)])
    p.grad = torch.tensor(g, dtype=torch.float64)
    optimizer.step()
    return p.detach()


@pytest.mark.parametrize(
    "spec",
    [
        SPEC,
        {"name": "muon", "nesterov": False, "adjust_lr": "match_rms_adamw", "ns_steps": 3},
    ],
    ids=["decay-aux-adamw", "no-nesterov-moonlight-scale"],
)
def test_matches_the_numpy_reference(spec) -> None:
    settings = {k: v for k, v in spec.items() if k != "name"}
    # the problem: layer.weight 4×3 and conv.weight (2,3,2,2) take Muon; the bias takes AdamW
    assert_follows_reference(with_uniform_decay(spec), reference, settings)


def test_worked_example_fixture_d() -> None:
    np.testing.assert_allclose(
        newton_schulz5(0.0975 * torch.tensor(K1, dtype=torch.float64)),
        [[0.7080853854, -0.0646825505, 0.386383968], [0.1285094334, 0.772767936, -0.3221292513]],
        atol=1e-9,
    )
    np.testing.assert_allclose(
        one_step(D0, K1, lr=0.02),
        [[0.9858382923, 2.001293651, -0.0077276794], [0.4974298113, -1.0154553587, 1.006442585]],
        atol=1e-9,
    )
    transposed = one_step(np.array(D0).T.tolist(), np.array(K1).T.tolist(), lr=0.02)
    np.testing.assert_allclose(  # rows > cols: factor sqrt(3/2)
        transposed,
        [[0.9826555211, 0.4968521746], [2.0015843924, -1.0189288713], [-0.0094644357, 1.007890523]],
        atol=1e-9,
    )


def test_foreach_and_single_tensor_paths_agree() -> None:
    assert_foreach_matches_single(with_uniform_decay(SPEC), quadratic_problem(seed=1))


def test_resumes_bit_identically() -> None:
    assert_resumes_bit_identically(with_uniform_decay(SPEC), quadratic_problem(seed=2))


def test_parameter_without_gradient_is_untouched() -> None:
    # a matrix (Muon) and a vector (the auxiliary AdamW)
    assert_untouched_without_grad(SPEC, frozen_shapes=((4, 3), (4,)))


@pytest.mark.parametrize(
    "case",
    [
        # 1-D parameters: these exercise the auxiliary AdamW only (Muon is for matrices)
        converges("rosenbrock", 2000, {"adamw_lr": 0.1, "adamw_betas": (0.9, 0.999)}, 1e-6),
        converges("beale", 1000, {"adamw_lr": 0.1, "adamw_betas": (0.9, 0.999)}, 1e-6),
        converges("logistic", 300, {"adamw_lr": 0.1}, 0.1),
    ],
)
def test_converges(case: Convergence) -> None:
    assert_converges("muon", case)


def test_converges_on_a_matrix_least_squares_problem() -> None:
    # The Muon path proper: W (6×4), L = ½ mean ‖XW − Y‖², from W = 0 (loss ≈ 4.6).
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=gen, dtype=torch.float64)
    y = x @ torch.randn(6, 4, generator=gen, dtype=torch.float64)

    def loss_fn(w: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((x @ w - y) ** 2).mean()

    # Muon's fixed-size spectral steps: the loss settles at an lr-dependent floor
    assert minimise({"name": "muon", "lr": 0.05}, loss_fn, W0_6X4, 300) < 1e-2


def test_newton_schulz_acts_on_singular_values_only() -> None:
    # NS5(G) = U p⁵(Σ/‖G‖_F) Vᵀ: exact in float64 (up to the 1e-7 in the normalisation).
    g = torch.randn(7, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    u, s, vh = np.linalg.svd(g.numpy(), full_matrices=False)
    expected = (u * p5(s / (np.linalg.norm(g.numpy()) + 1e-7))) @ vh
    np.testing.assert_allclose(newton_schulz5(g), expected, atol=1e-12)
    np.testing.assert_allclose(newton_schulz5(g.T), expected.T, atol=1e-12)


def test_orthogonalised_update_has_singular_values_near_one() -> None:
    g = torch.randn(8, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = torch.linalg.svdvals(newton_schulz5(g))
    assert s.min() > 0.5 and s.max() < 1.5, s


def test_update_is_ns5_of_the_nesterov_momentum_with_conv_kernels_flattened() -> None:
    gen = torch.Generator().manual_seed(2)
    w0 = torch.randn(4, 3, 2, 2, generator=gen, dtype=torch.float64)
    g = torch.randn(4, 3, 2, 2, generator=gen, dtype=torch.float64)
    w1 = one_step(w0.tolist(), g.tolist(), lr=0.1, momentum=0.9)
    u = (1 - 0.9) * g + 0.9 * (1 - 0.9) * g  # first step: b = (1−β)g, u = (1−β)g + βb
    expected = w0 - 0.1 * newton_schulz5(u.reshape(4, -1)).reshape(w0.shape)
    torch.testing.assert_close(w1, expected, rtol=0, atol=1e-14)


def test_bfloat16_newton_schulz_is_close_to_float64() -> None:
    w1 = one_step(D0, K1, lr=0.02, ns_dtype="bfloat16")
    assert w1.dtype == torch.float64
    np.testing.assert_allclose(w1, one_step(D0, K1, lr=0.02), atol=5e-3)


def test_routes_vectors_embeddings_and_the_classifier_to_adamw() -> None:
    model = nn.Sequential()
    model.add_module("embed", nn.Embedding(5, 4))
    model.add_module("hidden", nn.Linear(4, 8))
    model.add_module("head", nn.Linear(8, 3))
    optimizer = build_optimizer({"name": "muon", "adamw_lr": 0.003}, model)
    model(torch.tensor([[0, 1], [2, 3]])).sum().backward()
    optimizer.step()
    muon_params = {id(p) for g in optimizer.param_groups if g["use_muon"] for p in g["params"]}
    assert muon_params == {id(model.hidden.weight)}
    for g in optimizer.param_groups:
        assert g["lr"] == (0.02 if g["use_muon"] else 0.003)
        for p in g["params"]:
            expected = {"momentum_buffer"} if g["use_muon"] else {"step", "exp_avg", "exp_avg_sq"}
            assert set(optimizer.state[p]) == expected


def test_groups_added_later_are_split_too() -> None:
    w = nn.Parameter(torch.randn(3, 2, dtype=torch.float64))
    optimizer = build_optimizer({"name": "muon"}, [("w", w)])
    extra_w = nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    extra_b = nn.Parameter(torch.randn(4, dtype=torch.float64))
    optimizer.add_param_group({"params": [extra_w, extra_b], "names": ["x.weight", "x.bias"]})
    kinds = [(g["use_muon"], len(g["params"])) for g in optimizer.param_groups]
    assert kinds == [(True, 1), (True, 1), (False, 1)]
    assert optimizer.param_groups[2]["lr"] == 3e-4


def test_a_schedule_scales_muon_and_adamw_alike() -> None:
    w = nn.Parameter(torch.randn(3, 2, dtype=torch.float64))
    b = nn.Parameter(torch.randn(3, dtype=torch.float64))
    optimizer = build_optimizer({"name": "muon"}, [("w", w), ("b", b)])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    assert sorted(g["lr"] for g in optimizer.param_groups) == [0.5 * 3e-4, 0.5 * 0.02]
    del scheduler


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({"momentum": 1.0}, "optimizer.momentum"),
        ({"ns_steps": 0}, "optimizer.ns_steps"),
        ({"adamw_lr": 0}, "optimizer.adamw_lr"),
        ({"adamw_betas": [0.9, 1.5]}, "optimizer.adamw_betas[1]"),
        ({"ns_dtype": "float16"}, "optimizer.ns_dtype"),
    ],
)
def test_bad_settings_are_rejected(bad, path) -> None:
    assert_spec_error({"name": "muon", **bad}, path)


def test_trains_a_tiny_job() -> None:
    train_tiny_job({"name": "muon", "lr": 0.05, "adamw_lr": 0.01}, min_accuracy=0.5)
