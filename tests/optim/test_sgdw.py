"""sgdw: SGD with decoupled weight decay (Decoupled Weight Decay Regularization)."""

from __future__ import annotations

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
    assert_matches_reference,
    assert_resumes_bit_identically,
    assert_spec_error,
    assert_untouched_without_grad,
    converges,
    make_params,
    multiplier_fn,
    quadratic_problem,
    step_once,
    steps_with_gradients,
    train_tiny_job,
    trajectory,
    with_uniform_decay,
)
from tests.reference.sgdw import reference
from trainlib import build_optimizer

CASES: dict[str, dict[str, Any]] = {
    "momentum": {"name": "sgdw", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.05},
    "nesterov": {"name": "sgdw", "lr": 0.05, "momentum": 0.8, "nesterov": True,
                 "weight_decay": 0.1},
    "dampening": {"name": "sgdw", "lr": 0.05, "momentum": 0.7, "dampening": 0.3,
                  "weight_decay": 0.02},
    "plain": {"name": "sgdw", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.05},
    "independent": {"name": "sgdw", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-3,
                    "decay": "independent"},
}  # fmt: skip


def spec_of(case: str, **extra: Any) -> dict[str, Any]:
    return with_uniform_decay({**CASES[case], **extra})


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("foreach", [False, True])
def test_matches_numpy_reference(case: str, foreach: bool) -> None:
    assert_follows_reference(spec_of(case, foreach=foreach), reference, CASES[case])


@pytest.mark.parametrize("case", ["momentum", "independent"])
@pytest.mark.parametrize("foreach", [False, True])
def test_matches_numpy_reference_under_a_cosine_schedule(case: str, foreach: bool) -> None:
    """The lr changes every step: pins η_t in the decay (coupled) vs η_t/η_max (independent)."""
    multipliers = [0.5 * (1 + math.cos(math.pi * i / 20)) for i in range(20)]
    problem = quadratic_problem(seed=2)
    params = make_params(problem)
    optimizer = build_optimizer(spec_of(case, foreach=foreach), params)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier_fn(multipliers))
    ours = []
    for _ in multipliers:
        step_once(optimizer, params, problem)
        scheduler.step()
        ours.append({k: p.detach().numpy().copy() for k, p in params})
    ref = reference(CASES[case], problem, 20, schedule=multiplier_fn(multipliers))
    assert_matches_reference(ours, ref, rtol=1e-6)


# --- worked examples (formulas-optimizers.md §2, fixture A, μ = 0.9) -----------------------------

THETA_A = [1.0, -2.0]
G1, G2 = [0.5, -1.0], [-0.3, 0.2]


@pytest.mark.parametrize("foreach", [False, True])
def test_worked_example_lr_coupled_decay(foreach: bool) -> None:
    spec = {"name": "sgdw", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01, "foreach": foreach}
    thetas = steps_with_gradients(spec, THETA_A, [G1, G2])
    np.testing.assert_allclose(thetas[0], [0.949, -1.898], atol=1e-9)
    np.testing.assert_allclose(thetas[1], [0.933051, -1.826102], atol=1e-9)


def test_worked_example_independent_decay_constant_schedule() -> None:
    """Paper/authors' form with α = 0.1, λ = 1e-3, η_t = 1: the same numbers as λ_lr = 0.01."""
    spec = {"name": "sgdw", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3,
            "decay": "independent"}  # fmt: skip
    thetas = steps_with_gradients(spec, THETA_A, [G1, G2], multipliers=[1.0, 1.0])
    np.testing.assert_allclose(thetas[0], [0.949, -1.898], atol=1e-9)
    np.testing.assert_allclose(thetas[1], [0.933051, -1.826102], atol=1e-9)


def test_independent_decay_with_a_changing_lr_is_the_authors_code_form() -> None:
    """η_1 = 1, η_2 = 0.5 (× α = 0.1). The authors' code keeps the lr outside the buffer:
    b2 = 0.9 g1 + g2 = [0.15, −0.7], θ2 = θ1 − 0.05 b2 − 0.5·1e-3 θ1 = [0.9410255, −1.862051].
    (The paper's Algorithm 1 puts η_t α inside the buffer and gives [0.9185255, −1.817051]; the
    two coincide only for a constant schedule — we implement the code's form.)"""
    spec = {"name": "sgdw", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3,
            "decay": "independent"}  # fmt: skip
    thetas = steps_with_gradients(spec, THETA_A, [G1, G2], multipliers=[1.0, 0.5])
    np.testing.assert_allclose(thetas[0], [0.949, -1.898], atol=1e-9)
    np.testing.assert_allclose(thetas[1], [0.9410255, -1.862051], atol=1e-9)


# --- properties of decoupled decay ---------------------------------------------------------------


@pytest.mark.parametrize("foreach", [False, True])
def test_decay_does_not_enter_the_momentum_buffer(foreach: bool) -> None:
    """With zero gradients only the decay acts: θ_t = θ0(1 − ηλ)^t and the buffer stays 0
    (torch SGD's L2 decay would accumulate λθ in the buffer and overshoot)."""
    spec = {"name": "sgdw", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.5, "foreach": foreach}
    p = nn.Parameter(torch.tensor(THETA_A, dtype=torch.float64))
    optimizer = build_optimizer(with_uniform_decay(spec), [("w", p)])
    for _ in range(5):
        p.grad = torch.zeros(2, dtype=torch.float64)
        optimizer.step()
    np.testing.assert_allclose(p.detach().numpy(), np.array(THETA_A) * 0.95**5, rtol=1e-14)
    assert not optimizer.state[p]["momentum_buffer"].any()


def test_without_momentum_equals_sgd_with_l2() -> None:
    """μ = 0: θ(1 − ηλ) − ηg = θ − η(g + λθ), torch SGD's coupled decay."""
    problem = quadratic_problem(seed=7)
    ours = trajectory(with_uniform_decay({"name": "sgdw", "lr": 0.1, "momentum": 0.0,
                                          "weight_decay": 0.05}), problem, 10)  # fmt: skip
    sgd = trajectory(with_uniform_decay({"name": "sgd", "lr": 0.1, "weight_decay": 0.05}),
                     problem, 10)  # fmt: skip
    assert_matches_reference(ours, sgd, rtol=1e-13, atol=1e-14)


def test_momentum_differs_from_sgd_with_l2() -> None:
    """With momentum the two decays differ (the whole point of decoupling)."""
    problem = quadratic_problem(seed=7)
    ours = trajectory(with_uniform_decay({"name": "sgdw", "lr": 0.1, "momentum": 0.9,
                                          "weight_decay": 0.05}), problem, 5)  # fmt: skip
    sgd = trajectory(with_uniform_decay({"name": "sgd", "lr": 0.1, "momentum": 0.9,
                                         "weight_decay": 0.05}), problem, 5)  # fmt: skip
    assert not np.allclose(ours[-1]["layer.weight"], sgd[-1]["layer.weight"], rtol=1e-6)


def test_defaults() -> None:
    p = nn.Parameter(torch.zeros(2, 2))
    group = build_optimizer({"name": "sgdw"}, [p]).param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (
        0.1, 0.9, 5e-4, False
    )  # fmt: skip
    assert group["decay"] == "coupled_lr"
    independent = build_optimizer({"name": "sgdw", "decay": "independent"}, [p])
    assert independent.param_groups[0]["weight_decay"] == 5e-5  # 5e-4 · 0.1: the same decay


# --- foreach, resume, parameters without gradients ---------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_foreach_and_single_tensor_paths_agree(case: str) -> None:
    assert_foreach_matches_single(spec_of(case), quadratic_problem(seed=5))


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("foreach", [False, True])
def test_resumes_bit_identically(case: str, foreach: bool) -> None:
    assert_resumes_bit_identically(spec_of(case, foreach=foreach), quadratic_problem(seed=6))


@pytest.mark.parametrize("foreach", [False, True])
def test_parameter_without_gradient_is_untouched_and_gets_no_state(foreach: bool) -> None:
    optimizer = assert_untouched_without_grad(spec_of("nesterov", foreach=foreach))
    assert any("momentum_buffer" in state for state in optimizer.state.values())


def test_closure_is_evaluated_before_the_step() -> None:
    p = nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    opt = build_optimizer({"name": "sgdw", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.0}, [p])

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss.detach()) == 5.0
    np.testing.assert_allclose(p.detach().numpy(), [0.8, 1.6], rtol=1e-15)


# --- convergence ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        # Rosenbrock's curvature (~1000 near the valley floor) caps a stable lr at ~1e-3
        converges("rosenbrock", 3000, {"lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0}, 1e-3),
        converges("beale", 2000, {"lr": 1e-2, "momentum": 0.9, "weight_decay": 0.0}, 1e-3),
        converges("logistic", 500, {"lr": 0.5, "momentum": 0.9, "nesterov": True}, 0.08),
    ],
)
def test_converges(case: Convergence) -> None:
    assert_converges("sgdw", case)


# --- validation and a real job -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("optimizer", "path"),
    [
        ({"name": "sgdw", "momentum": 1.0}, "optimizer.momentum"),
        ({"name": "sgdw", "dampening": 1.5}, "optimizer.dampening"),
        ({"name": "sgdw", "weight_decay": -1e-4}, "optimizer.weight_decay"),
        ({"name": "sgdw", "decay": "paper"}, "optimizer.decay"),
        ({"name": "sgdw", "nesterov": True, "momentum": 0.0}, "optimizer"),
        ({"name": "sgdw", "decay": "independent", "weight_decay": 2.0}, "optimizer"),
    ],
)
def test_bad_settings_are_rejected_with_their_path(optimizer: dict, path: str) -> None:
    assert_spec_error(optimizer, path)


@pytest.mark.parametrize("decay", ["coupled_lr", "independent"])
def test_trains_a_tiny_job(decay: str) -> None:
    train_tiny_job(
        {"name": "sgdw", "lr": 0.1, "decay": decay},
        min_accuracy=0.5,
        schedule={"name": "cosine", "warmup_steps": 5},
    )
