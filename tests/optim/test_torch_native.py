"""nadam, radam, rmsprop, adagrad (torch's own classes) and adamw's independent decay.

Where torch has the algorithm we use torch's class, so the tests pin two things: our builder hands
every setting to torch (bit-equal to a directly constructed torch optimizer) and torch's rule is
the published one (an independent NumPy reference, the worked examples of formulas-optimizers.md).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

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
    make_params,
    minimise,
    multiplier_fn,
    quadratic_problem,
    rosenbrock,
    run_with_gradients,
    step_once,
    train_tiny_job,
    trajectory,
    with_uniform_decay,
)
from tests.reference import adagrad as adagrad_ref
from tests.reference import adamw_independent as adamw_ref
from tests.reference import nadam as nadam_ref
from tests.reference import radam as radam_ref
from tests.reference import rmsprop as rmsprop_ref
from trainlib import build_optimizer
from trainlib.optim.torch_native import AdamWIndependentDecay, LazyAdagrad

# --- settings exercised everywhere: non-default ε, betas and decay ------------------------------

CASES: dict[str, tuple[dict[str, Any], Callable[..., Any]]] = {
    "nadam": (
        {"name": "nadam", "lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-3, "weight_decay": 0.05,
         "momentum_decay": 0.01},
        nadam_ref.reference,
    ),
    "nadamw": (
        {"name": "nadam", "lr": 0.05, "eps": 1e-6, "weight_decay": 0.1,
         "decoupled_weight_decay": True},
        nadam_ref.reference,
    ),
    "radam": (  # β2 0.99 rectifies from step 6 on, so 20 steps cover both branches
        {"name": "radam", "lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-3, "weight_decay": 0.05},
        radam_ref.reference,
    ),
    "radam-decoupled": (
        {"name": "radam", "lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True},
        radam_ref.reference,
    ),
    "rmsprop": (
        {"name": "rmsprop", "lr": 0.01, "alpha": 0.9, "eps": 1e-3, "weight_decay": 0.05},
        rmsprop_ref.reference,
    ),
    "rmsprop-centered-momentum": (
        {"name": "rmsprop", "lr": 0.005, "alpha": 0.95, "eps": 1e-4, "weight_decay": 0.02,
         "momentum": 0.8, "centered": True},
        rmsprop_ref.reference,
    ),
    "adagrad": (
        {"name": "adagrad", "lr": 0.1, "lr_decay": 0.05, "initial_accumulator_value": 0.1,
         "eps": 1e-3, "weight_decay": 0.05},
        adagrad_ref.reference,
    ),
    "adamw": (
        {"name": "adamw", "lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-3, "weight_decay": 0.1},
        adamw_ref.reference,
    ),
    "adamw-independent": (
        {"name": "adamw", "lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-3, "weight_decay": 0.01,
         "decay": "independent"},
        adamw_ref.reference,
    ),
    "adamw-independent-amsgrad": (
        {"name": "adamw", "lr": 0.05, "eps": 1e-6, "decay": "independent", "amsgrad": True},
        adamw_ref.reference,
    ),
}  # fmt: skip


def spec_of(case: str, **extra: Any) -> dict[str, Any]:
    return with_uniform_decay({**CASES[case][0], **extra})


@pytest.fixture
def float64_default() -> Any:
    """torch NAdam keeps its μ-product in the default float dtype: float32 would put ~1e-9
    absolute errors into float64 steps (past rtol 1e-6 where a coordinate crosses zero)."""
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(saved)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("foreach", [False, True])
def test_matches_numpy_reference(case: str, foreach: bool, float64_default: None) -> None:
    spec, reference = CASES[case]
    assert_follows_reference(spec_of(case, foreach=foreach), reference, spec)


def test_nadam_float32_mu_product_stays_within_1e_8_of_the_reference() -> None:
    """Under the default float32 dtype torch's μ-product is float32: still close."""
    spec, reference = CASES["nadam"]
    problem = quadratic_problem()
    ours = trajectory(spec_of("nadam"), problem, 20)
    assert_matches_reference(ours, reference(spec, problem, 20), rtol=1e-6, atol=1e-8)


# --- bit-equal to torch's optimizer constructed directly ----------------------------------------

TORCH_CLASSES: dict[str, Any] = {
    "nadam": torch.optim.NAdam,
    "radam": torch.optim.RAdam,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}


@pytest.mark.parametrize("case", [c for c in sorted(CASES) if not c.startswith("adamw")])
@pytest.mark.parametrize("foreach", [False, True])
def test_bit_equal_to_torch_constructed_directly(case: str, foreach: bool) -> None:
    settings = {k: v for k, v in CASES[case][0].items() if k != "name"}
    cls = TORCH_CLASSES[CASES[case][0]["name"]]
    problem = quadratic_problem(seed=1)
    ours_params = make_params(problem)
    ours = build_optimizer(spec_of(case, foreach=foreach), ours_params)
    theirs_params = make_params(problem)
    theirs = cls([p for _, p in theirs_params], **settings, foreach=foreach)
    for _ in range(15):
        step_once(ours, ours_params, problem)
        step_once(theirs, theirs_params, problem)
        for (name, mine), (_, other) in zip(ours_params, theirs_params, strict=True):
            assert torch.equal(mine, other), name


def test_builders_pass_every_setting_to_torch() -> None:
    params = [nn.Parameter(torch.zeros(2, 2))]  # a matrix: decayed by the default groups
    nadam = build_optimizer(
        {"name": "nadam", "momentum_decay": 0.01, "decoupled_weight_decay": True}, params
    )
    assert isinstance(nadam, torch.optim.NAdam)  # torch's update, our state-dict loading
    group = nadam.param_groups[0]
    assert (group["lr"], group["momentum_decay"], group["decoupled_weight_decay"]) == (
        2e-3, 0.01, True
    )  # fmt: skip
    rms = build_optimizer({"name": "rmsprop", "centered": True, "momentum": 0.5}, params)
    assert type(rms) is torch.optim.RMSprop
    g = rms.param_groups[0]
    assert (g["lr"], g["alpha"], g["eps"], g["centered"], g["momentum"]) == (
        1e-2, 0.99, 1e-8, True, 0.5
    )  # fmt: skip
    ada = build_optimizer({"name": "adagrad", "lr_decay": 0.1}, params)
    assert isinstance(ada, torch.optim.Adagrad) and type(ada) is LazyAdagrad
    assert (ada.param_groups[0]["eps"], ada.param_groups[0]["lr_decay"]) == (1e-10, 0.1)
    radam = build_optimizer({"name": "radam"}, params)
    assert type(radam) is torch.optim.RAdam
    assert radam.param_groups[0]["decoupled_weight_decay"] is False
    # the default adamw is torch's class itself; independent decay is a subclass
    assert type(build_optimizer({"name": "adamw"}, params)) is torch.optim.AdamW
    independent = build_optimizer({"name": "adamw", "decay": "independent"}, params)
    assert type(independent) is AdamWIndependentDecay
    assert independent.param_groups[0]["weight_decay"] == 1e-4  # the paper's default λ
    explicit = build_optimizer({"name": "adamw", "decay": "independent", "weight_decay": 0}, params)
    assert explicit.param_groups[0]["weight_decay"] == 0


# --- worked examples (formulas-optimizers.md, fixture A: θ0 = [1, −2], g1, g2 alternating) ------

THETA_A = [1.0, -2.0]
G1, G2 = [0.5, -1.0], [-0.3, 0.2]


def test_nadam_worked_example() -> None:
    thetas, opt = run_with_gradients({"name": "nadam", "lr": 0.1}, THETA_A, [G1])
    np.testing.assert_allclose(thetas[0], [0.8943548243, -1.8943548232], atol=1e-9)
    state = next(iter(opt.state.values()))
    mu1 = 0.4500734736
    np.testing.assert_allclose(float(state["mu_product"]), mu1, atol=1e-9)
    thetas, opt = run_with_gradients({"name": "nadam", "lr": 0.1}, THETA_A, [G1, G2])
    np.testing.assert_allclose(thetas[1], [0.9427308228, -1.908673933], atol=1e-9)
    state = next(iter(opt.state.values()))
    np.testing.assert_allclose(float(state["mu_product"]), mu1 * 0.4501469352, atol=1e-9)


def test_radam_worked_example_momentum_steps_then_rectified() -> None:
    thetas, _ = run_with_gradients({"name": "radam", "lr": 0.1}, THETA_A, [G1, G2] * 3 + [G1])
    np.testing.assert_allclose(thetas[0], [0.95, -1.9], atol=1e-9)
    np.testing.assert_allclose(thetas[1], [0.9421052632, -1.8631578947], atol=1e-9)
    np.testing.assert_allclose(thetas[4], [0.8926021907, -1.713903286], atol=1e-9)
    np.testing.assert_allclose(thetas[5], [0.8921077216, -1.7125837601], atol=1e-9)
    np.testing.assert_allclose(thetas[6], [0.8908805886, -1.7104949452], atol=1e-9)


def test_radam_first_five_steps_are_bias_corrected_momentum() -> None:
    """ρ_t ≤ 5 for t ≤ 5 at β2 = 0.999: θ ← θ − η m̂, independent of the gradient's scale in v."""
    grads = [G1, G2] * 2 + [G1]
    thetas, _ = run_with_gradients({"name": "radam", "lr": 0.1}, THETA_A, grads)
    m = np.zeros(2)
    theta = np.array(THETA_A)
    for t, g in enumerate(grads, start=1):
        m = 0.9 * m + 0.1 * np.array(g)
        theta = theta - 0.1 * m / (1 - 0.9**t)
        np.testing.assert_allclose(thetas[t - 1], theta, atol=1e-12)


def test_adagrad_worked_example() -> None:
    """Step 1 is −η sign(g) (up to ε); then η g / sqrt(Σ g²)."""
    thetas, _ = run_with_gradients({"name": "adagrad", "lr": 0.1}, THETA_A, [G1, G2])
    np.testing.assert_allclose(thetas[0], [0.9, -1.9], atol=1e-9)
    expected = [0.9 + 0.03 / math.sqrt(0.34), -1.9 - 0.02 / math.sqrt(1.04)]
    np.testing.assert_allclose(thetas[1], expected, atol=1e-9)


def test_rmsprop_worked_example() -> None:
    """v1 = (1 − α) g1², so step 1 is −η sign(g)/sqrt(1 − α) = −10η sign(g) at α = 0.99."""
    thetas, _ = run_with_gradients({"name": "rmsprop", "lr": 0.01}, THETA_A, [G1, G2])
    np.testing.assert_allclose(thetas[0], [0.9, -1.9], atol=1e-9)
    v2 = 0.99 * 0.01 * np.square(G1) + 0.01 * np.square(G2)
    np.testing.assert_allclose(thetas[1], thetas[0] - 0.01 * np.array(G2) / np.sqrt(v2), atol=1e-9)


def test_adamw_worked_example_torch_decay() -> None:
    thetas, _ = run_with_gradients(
        {"name": "adamw", "lr": 0.1, "weight_decay": 0.1}, THETA_A, [G1, G2]
    )
    np.testing.assert_allclose(thetas[0], [0.890000002, -1.880000001], atol=1e-9)
    np.testing.assert_allclose(thetas[1], [0.8619501989, -1.810097394], atol=1e-9)


@pytest.mark.parametrize(
    ("decay", "weight_decay", "theta1", "theta2"),
    [
        ("coupled_lr", 0.1, [0.890000002, -1.880000001], [0.8759751005, -1.8450486975]),
        # independent λ = λ_coupled · η_max gives the same numbers (identity of formulas §0.1)
        ("independent", 1e-2, [0.890000002, -1.880000001], [0.8759751005, -1.8450486975]),
        ("independent", 1e-4, [0.899900002, -1.899800001], [0.8902801055, -1.8741537075]),
    ],
)
def test_adamw_worked_example_with_a_schedule(
    decay: str, weight_decay: float, theta1: list[float], theta2: list[float]
) -> None:
    """η1 = 0.1, η2 = 0.05 by a torch scheduler, η_max = 0.1."""
    spec = {"name": "adamw", "lr": 0.1, "weight_decay": weight_decay, "decay": decay}
    thetas, _ = run_with_gradients(spec, THETA_A, [G1, G2], multipliers=[1.0, 0.5])
    np.testing.assert_allclose(thetas[0], theta1, atol=1e-9)
    np.testing.assert_allclose(thetas[1], theta2, atol=1e-9)


def test_adamw_independent_without_a_scheduler_uses_the_lr_at_construction() -> None:
    """No scheduler (no initial_lr): η_max is the lr the group was built with."""
    p = nn.Parameter(torch.tensor(THETA_A, dtype=torch.float64))
    opt = build_optimizer(
        with_uniform_decay(
            {"name": "adamw", "lr": 0.1, "weight_decay": 1e-4, "decay": "independent"}
        ),
        [("w", p)],
    )
    assert opt.param_groups[0]["base_lr"] == 0.1
    for g, lr in ((G1, 0.1), (G2, 0.05)):
        opt.param_groups[0]["lr"] = lr
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    np.testing.assert_allclose(p.detach().numpy(), [0.8902801055, -1.8741537075], atol=1e-9)


def test_adamw_independent_decay_does_not_scale_with_the_peak_lr() -> None:
    """The paper's point: with zero gradients (no Adam step) only the decay acts; independent
    decay shrinks θ by Π(1 − s_t λ) whatever η_max is, coupled decay by Π(1 − η_t λ)."""
    multipliers = [1.0, 0.5, 0.25]
    zeros = [[0.0, 0.0]] * 3
    lam = 1e-2
    shrink = np.prod([1 - s * lam for s in multipliers])
    for peak in (0.1, 0.4):
        ind, _ = run_with_gradients(
            {"name": "adamw", "lr": peak, "weight_decay": lam, "decay": "independent"},
            THETA_A, zeros, multipliers,
        )  # fmt: skip
        np.testing.assert_allclose(ind[-1], np.array(THETA_A) * shrink, rtol=1e-14)
        coupled, _ = run_with_gradients(
            {"name": "adamw", "lr": peak, "weight_decay": lam}, THETA_A, zeros, multipliers
        )
        coupled_shrink = np.prod([1 - peak * s * lam for s in multipliers])
        np.testing.assert_allclose(coupled[-1], np.array(THETA_A) * coupled_shrink, rtol=1e-14)


def test_adamw_independent_restores_weight_decay_after_the_step() -> None:
    p = nn.Parameter(torch.ones(3, 2, dtype=torch.float64))
    opt = build_optimizer({"name": "adamw", "decay": "independent", "weight_decay": 0.01}, [p])
    p.grad = torch.ones_like(p)
    opt.step()
    assert opt.param_groups[0]["weight_decay"] == 0.01
    assert opt.state_dict()["param_groups"][0]["weight_decay"] == 0.01


def test_adamw_independent_closure_sees_the_weights_before_decay() -> None:
    p = nn.Parameter(torch.full((2,), 2.0, dtype=torch.float64))
    opt = build_optimizer({"name": "adamw", "decay": "independent", "weight_decay": 0.5}, [p])
    seen = []

    def closure() -> torch.Tensor:
        seen.append(p.detach().clone())
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert torch.equal(seen[0], torch.full((2,), 2.0, dtype=torch.float64))
    assert float(loss.detach()) == 8.0


def schedule_trajectory(spec: dict[str, Any], problem: Any, multipliers: list[float]) -> list:
    params = make_params(problem)
    optimizer = build_optimizer(spec, params)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier_fn(multipliers))
    out = []
    for _ in multipliers:
        step_once(optimizer, params, problem)
        scheduler.step()
        out.append({k: p.detach().numpy().copy() for k, p in params})
    return out


@pytest.mark.parametrize("decay", ["coupled_lr", "independent"])
def test_adamw_with_a_cosine_schedule_matches_reference(decay: str) -> None:
    multipliers = [0.5 * (1 + math.cos(math.pi * i / 20)) for i in range(20)]
    spec = {"name": "adamw", "lr": 0.05, "weight_decay": 0.02, "decay": decay, "eps": 1e-6}
    problem = quadratic_problem(seed=2)
    ours = schedule_trajectory(with_uniform_decay(spec), problem, multipliers)
    ref = adamw_ref.reference(spec, problem, 20, schedule=lambda i: multipliers[i])
    assert_matches_reference(ours, ref, rtol=1e-6)


def test_adamw_independent_resumes_with_its_scheduler() -> None:
    """η_max (initial_lr/base_lr) travels in the param groups of the state dict."""
    multipliers = [1.0 - i / 12 for i in range(12)]
    spec = with_uniform_decay(
        {"name": "adamw", "lr": 0.05, "weight_decay": 0.05, "decay": "independent"}
    )
    problem = quadratic_problem(seed=3)
    whole = schedule_trajectory(spec, problem, multipliers)[-1]

    params = make_params(problem)
    opt = build_optimizer(spec, params)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, multiplier_fn(multipliers))
    for _ in range(5):
        step_once(opt, params, problem)
        sched.step()
    saved_opt, saved_sched = copy.deepcopy(opt.state_dict()), copy.deepcopy(sched.state_dict())
    resumed = [(k, nn.Parameter(p.detach().clone())) for k, p in params]
    opt = build_optimizer(spec, resumed)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, multiplier_fn(multipliers))
    opt.load_state_dict(saved_opt)
    sched.load_state_dict(saved_sched)
    for _ in range(7):
        step_once(opt, resumed, problem)
        sched.step()
    for k, p in resumed:
        assert np.array_equal(p.detach().numpy(), whole[k]), k


# --- foreach, resume, parameters without gradients ---------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_foreach_and_single_tensor_paths_agree(case: str) -> None:
    assert_foreach_matches_single(spec_of(case), quadratic_problem(seed=5))


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("foreach", [False, True])
def test_resumes_bit_identically(case: str, foreach: bool) -> None:
    assert_resumes_bit_identically(spec_of(case, foreach=foreach), quadratic_problem(seed=6))


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("foreach", [False, True])
def test_parameter_without_gradient_is_untouched_and_gets_no_state(
    case: str, foreach: bool
) -> None:
    optimizer = assert_untouched_without_grad(spec_of(case, foreach=foreach))
    assert any(optimizer.state.values())


# --- convergence from fixed starts ---------------------------------------------------------------

CONVERGENCE: dict[str, list[tuple[dict[str, Any], str, int, float]]] = {
    # (settings, problem, steps, threshold); starts: rosenbrock 24.2, beale 14.2, logistic 0.693
    "nadam": [
        ({"lr": 0.02}, "rosenbrock", 3000, 1e-3),
        ({"lr": 0.02}, "beale", 2000, 1e-3),
        ({"lr": 0.1}, "logistic", 500, 0.08),
    ],
    "radam": [
        # RAdam's first steps are un-adapted momentum steps, and Rosenbrock's gradient at the start
        # is ~150: a small lr, and β2 0.99 to shorten that phase (lr 0.02 diverges)
        ({"lr": 5e-3, "betas": (0.9, 0.99)}, "rosenbrock", 3000, 1e-3),
        ({"lr": 0.02}, "beale", 2000, 1e-3),
        ({"lr": 0.5}, "logistic", 500, 0.08),
    ],
    "rmsprop": [
        ({"lr": 1e-3, "momentum": 0.9, "alpha": 0.999}, "rosenbrock", 3000, 1e-3),
        ({"lr": 1e-3, "momentum": 0.5}, "beale", 2000, 1e-3),
        ({"lr": 3e-2}, "logistic", 500, 0.08),
    ],
    "adagrad": [
        # Adagrad's steps shrink as 1/sqrt(Σg²): it crawls along the curved valley (0.019 here)
        ({"lr": 1.0}, "rosenbrock", 3000, 5e-2),
        ({"lr": 0.5}, "beale", 2000, 1e-3),
        ({"lr": 1.0}, "logistic", 500, 0.08),
    ],
    "adamw-independent": [
        ({"lr": 0.02, "decay": "independent", "weight_decay": 1e-6}, "rosenbrock", 3000, 1e-3),
        ({"lr": 0.02, "decay": "independent", "weight_decay": 1e-6}, "beale", 2000, 1e-3),
        ({"lr": 0.1, "decay": "independent"}, "logistic", 500, 0.08),
    ],
}

PROBLEMS = {
    "rosenbrock": (rosenbrock, [-1.5, 2.0]),
    "beale": (beale, [1.0, 1.0]),
    "logistic": (logistic_loss(), [0.0, 0.0, 0.0]),
}


@pytest.mark.parametrize(
    ("name", "settings", "problem", "steps", "threshold"),
    [(n, *c) for n, cases in CONVERGENCE.items() for c in cases],
    ids=[f"{n}-{c[1]}" for n, cases in CONVERGENCE.items() for c in cases],
)
def test_converges(name: str, settings: dict, problem: str, steps: int, threshold: float) -> None:
    loss_fn, x0 = PROBLEMS[problem]
    start = float(loss_fn(torch.tensor(x0, dtype=torch.float64)))
    final = minimise({"name": name.split("-")[0], **settings}, loss_fn, x0, steps)
    assert final < threshold < start


# --- validation and a real job -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("optimizer", "path"),
    [
        ({"name": "nadam", "betas": [0.9, 1.0]}, "optimizer.betas"),
        ({"name": "nadam", "momentum_decay": -1.0}, "optimizer.momentum_decay"),
        ({"name": "radam", "eps": 0.0}, "optimizer.eps"),
        ({"name": "rmsprop", "lr": 0.0}, "optimizer.lr"),
        ({"name": "rmsprop", "alpha": 1.0}, "optimizer.alpha"),
        ({"name": "rmsprop", "momentum": 1.0}, "optimizer.momentum"),
        ({"name": "adagrad", "lr_decay": -0.1}, "optimizer.lr_decay"),
        (
            {"name": "adagrad", "initial_accumulator_value": -1.0},
            "optimizer.initial_accumulator_value",
        ),
        ({"name": "adamw", "decay": "schedule"}, "optimizer.decay"),
        ({"name": "adamw", "decay": "independent", "weight_decay": 2.0}, "optimizer"),
        ({"name": "adamw", "betas": [1.0, 0.9]}, "optimizer.betas"),
    ],
)
def test_bad_settings_are_rejected_with_their_path(optimizer: dict, path: str) -> None:
    assert_spec_error(optimizer, path)


@pytest.mark.parametrize(
    "optimizer",
    [
        {"name": "nadam", "lr": 3e-3},
        {"name": "radam", "lr": 3e-2},
        {"name": "rmsprop", "lr": 1e-3},
        {"name": "adagrad", "lr": 3e-2},
        {"name": "adamw", "lr": 3e-3, "decay": "independent"},
    ],
    ids=lambda o: o["name"] + ("-independent" if "decay" in o else ""),
)
def test_trains_a_tiny_job(optimizer: dict) -> None:
    train_tiny_job(optimizer, min_accuracy=0.5, schedule={"name": "cosine", "warmup_steps": 5})
