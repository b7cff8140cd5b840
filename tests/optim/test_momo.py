"""MoMo and MoMo-Adam: NumPy references, the formulas file's worked examples (§11), Polyak step."""

from __future__ import annotations

import math

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
    make_params,
    minimise,
    quadratic_problem,
    rosenbrock,
    step_once,
    train_tiny_job,
    with_uniform_decay,
)
from tests.reference import momo as momo_reference
from tests.reference import momo_adam as momo_adam_reference
from trainlib import build_optimizer

MOMO = [
    {"name": "momo"},
    {"name": "momo", "lr": 0.5, "beta": 0.8, "weight_decay": 0.1, "bias_correction": True},
    {"name": "momo", "use_fstar": True, "lb": -1.0},
    {"name": "momo", "use_fstar": True, "weight_decay": 0.05, "bias_correction": True},
]
MOMO_ADAM = [
    {"name": "momo_adam"},
    {"name": "momo_adam", "lr": 0.1, "weight_decay": 0.1, "betas": (0.8, 0.99), "eps": 1e-3},
    {
        "name": "momo_adam",
        "lr": 0.1,
        "weight_decay": 0.1,
        "divide": False,
        "use_fstar": True,
        "lb": -0.5,
    },
]
ALL = MOMO + MOMO_ADAM


def reference(spec: dict, problem, steps: int) -> list[dict[str, np.ndarray]]:
    module = momo_reference if spec["name"] == "momo" else momo_adam_reference
    return module.reference(spec, problem, steps)


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("spec", ALL)
def test_matches_the_numpy_reference(spec: dict, foreach: bool) -> None:
    assert_follows_reference(with_uniform_decay({**spec, "foreach": foreach}), reference)


def steps_with_gradients(spec: dict, losses: list[float]) -> list[np.ndarray]:
    """Fixture A: θ0 = [1, −2], g1 = [0.5, −1], g2 = [−0.3, 0.2], with the given losses."""
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    optimizer = build_optimizer(with_uniform_decay(spec), [("w", p)])
    out = []
    for g, f in zip([[0.5, -1.0], [-0.3, 0.2]], losses, strict=True):
        p.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step(loss=torch.tensor(f, dtype=torch.float64))
        out.append(p.detach().numpy().copy())
    return out


WORKED = [
    ({"name": "momo"}, [0.5, -1.0], [0.179743374, -0.328986117]),
    (
        {"name": "momo", "weight_decay": 0.1, "bias_correction": True},
        [0.4545454545, -0.9090909091],
        [0.3414528056, -0.4915180513],
    ),
    ({"name": "momo_adam"}, [0.9900000002, -1.9900000001], [0.9880850199, -1.9848897394]),
    ({"name": "momo_adam", "lr": 1.0}, [2.0e-8, -1.00000001], [-0.1914980106, -0.4889739399]),
]


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize(("spec", "theta1", "theta2"), WORKED)
def test_worked_examples_fixture_a(spec: dict, theta1: list, theta2: list, foreach: bool) -> None:
    t1, t2 = steps_with_gradients({**spec, "foreach": foreach}, [2.0, 0.5])
    np.testing.assert_allclose(t1, theta1, atol=1e-9)
    np.testing.assert_allclose(t2, theta2, atol=1e-9)


@pytest.mark.parametrize("spec", ALL)
def test_foreach_and_single_tensor_paths_agree(spec: dict) -> None:
    assert_foreach_matches_single(with_uniform_decay(spec), quadratic_problem(seed=1))


@pytest.mark.parametrize("spec", ALL)
def test_resumes_bit_identically(spec: dict) -> None:
    # the shared state (step count, f̄, online lower bound) travels in the state_dict too
    assert_resumes_bit_identically(with_uniform_decay(spec), quadratic_problem(seed=2))


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("name", ["momo", "momo_adam"])
def test_parameter_without_gradient_is_untouched(name: str, foreach: bool) -> None:
    spec = {"name": name, "weight_decay": 0.1, "foreach": foreach, "groups": {"no_decay": []}}
    assert_untouched_without_grad(spec)


@pytest.mark.parametrize("name", ["momo", "momo_adam"])
def test_a_parameter_that_gets_its_first_gradient_late_joins_in(name: str) -> None:
    a = nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    b = nn.Parameter(torch.tensor([-1.0], dtype=torch.float64))
    optimizer = build_optimizer({"name": name}, [("a", a), ("b", b)])
    for k in range(4):
        optimizer.zero_grad(set_to_none=True)
        loss = (a**2).sum() + (b**2).sum() if k >= 2 else (a**2).sum()
        loss.backward()
        optimizer.step(loss=loss.detach())
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    assert b.item() != -1.0 and optimizer.state[b]


# Tuned: MoMo at its defaults (lr 1 is only a cap); MoMo-Adam with the cap at 0.1.
@pytest.mark.parametrize(
    ("spec", "rosen", "beale_", "logit"),
    [({"name": "momo"}, 1e-6, 1e-6, 0.1), ({"name": "momo_adam", "lr": 0.1}, 1e-4, 1e-6, 0.1)],
)
def test_converges(spec: dict, rosen: float, beale_: float, logit: float) -> None:
    assert minimise(spec, rosenbrock, [-1.5, 2.0], 1000) < rosen  # from 12.5
    assert minimise(spec, beale, [1.0, 1.0], 1000) < beale_  # from 14.2
    assert minimise(spec, logistic_loss(), [0.0, 0.0, 0.0], 1000) < logit  # from log 2


# --- paper properties ---------------------------------------------------------------------------


@pytest.mark.parametrize("foreach", [False, True])
def test_without_momentum_momo_is_the_polyak_step(foreach: bool) -> None:
    """β = 0, λ = 0, f_* = min f: τ = min(η, (f − f_*)/‖g‖²). On f = ½ a w² that halves w."""
    a = torch.tensor([1.0, 4.0], dtype=torch.float64)
    w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    optimizer = build_optimizer(
        {"name": "momo", "beta": 0.0, "lr": 10.0, "foreach": foreach}, [("w", w)]
    )
    for _ in range(5):
        optimizer.zero_grad(set_to_none=True)
        loss = 0.5 * (a * w * w).sum()
        loss.backward()
        g = w.grad.clone()
        expected = w.detach() - (loss.detach() / g.pow(2).sum()) * g
        optimizer.step(loss=loss.detach())
        np.testing.assert_allclose(w.detach().numpy(), expected.numpy(), rtol=1e-12)
    single = nn.Parameter(torch.tensor([3.0], dtype=torch.float64))
    optimizer = build_optimizer({"name": "momo", "beta": 0.0, "lr": 10.0}, [("s", single)])
    for k in range(1, 6):
        optimizer.zero_grad(set_to_none=True)
        loss = 0.5 * 4.0 * single.pow(2).sum()
        loss.backward()
        optimizer.step(loss=loss.detach())
        assert single.item() == pytest.approx(3.0 / 2**k, rel=1e-12)


@pytest.mark.parametrize("name", ["momo", "momo_adam"])
def test_step_size_never_exceeds_the_cap(name: str) -> None:
    """With a very low lower bound the Polyak term is huge; τ stays at η/ρ_k (η/(1 − β1^k))."""
    lr = 1e-3
    w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    optimizer = build_optimizer({"name": name, "lr": lr, "lb": -1e6}, [("w", w)])
    w.grad = torch.tensor([0.5, -1.0], dtype=torch.float64)
    optimizer.step(loss=torch.tensor(1.0, dtype=torch.float64))
    if name == "momo":  # τ = η, d = g
        np.testing.assert_allclose(w.detach().numpy(), [1 - lr * 0.5, -2 + lr], rtol=1e-12)
    else:  # τ = η/(1 − β1), d/D = (1 − β1) g/(|g| + ε): a sign step of size η
        np.testing.assert_allclose(w.detach().numpy(), [1 - lr, -2 + lr], rtol=1e-6)


@pytest.mark.parametrize("name", ["momo", "momo_adam"])
def test_no_step_when_the_loss_is_at_the_lower_bound(name: str) -> None:
    w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    optimizer = build_optimizer({"name": name, "lb": 5.0}, [("w", w)])
    w.grad = torch.tensor([0.5, -1.0], dtype=torch.float64)
    optimizer.step(loss=torch.tensor(2.0, dtype=torch.float64))  # below f_* = 5
    assert torch.equal(w.detach(), torch.tensor([1.0, -2.0], dtype=torch.float64))


@pytest.mark.parametrize("name", ["momo", "momo_adam"])
def test_zero_gradients_give_no_nan(name: str) -> None:
    w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    optimizer = build_optimizer({"name": name, "weight_decay": 0.1, "groups": {"no_decay": []}},
                                [("w", w)])  # fmt: skip
    w.grad = torch.zeros(2, dtype=torch.float64)
    optimizer.step(loss=torch.tensor(1.0, dtype=torch.float64))
    # d = 0: no gradient step, only the proximal decay θ/(1 + ηλ)
    lr = 1.0 if name == "momo" else 1e-2
    np.testing.assert_allclose(w.detach().numpy(), np.array([1.0, -2.0]) / (1 + 0.1 * lr))


@pytest.mark.parametrize("name", ["momo", "momo_adam"])
def test_sums_are_global_across_parameter_groups(name: str) -> None:
    """As the authors' code: one τ from sums over all groups, so splitting the parameters into
    groups with equal settings changes nothing."""
    problem = quadratic_problem(seed=5)
    together = make_params(problem)
    split = make_params(problem)
    one = build_optimizer({"name": name}, [p for _, p in together])
    two = build_optimizer({"name": name}, [{"params": [p]} for _, p in split])
    assert len(two.param_groups) == 3
    for _ in range(5):
        step_once(one, together, problem)
        step_once(two, split, problem)
    for (_, a), (_, b) in zip(together, split, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["momo", "momo_adam"])
def test_needs_the_loss(name: str) -> None:
    w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    optimizer = build_optimizer({"name": name}, [("w", w)])
    assert getattr(optimizer, "needs_loss", False)
    w.grad = torch.tensor([0.5, -1.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="needs the loss"):
        optimizer.step()


@pytest.mark.parametrize("name", ["momo", "momo_adam"])
def test_closure_and_loss_give_the_same_step(name: str) -> None:
    results = []
    for use_closure in (False, True):
        w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
        optimizer = build_optimizer({"name": name}, [("w", w)])

        def closure(w: nn.Parameter = w) -> torch.Tensor:
            w.grad = None
            loss = (w**2).sum()
            loss.backward()
            return loss

        for _ in range(3):
            if use_closure:
                optimizer.step(closure)
            else:
                loss = closure()
                optimizer.step(loss=loss.detach())
        results.append(w.detach().clone())
    assert torch.equal(results[0], results[1])


def test_online_lower_bound_never_drops_below_lb() -> None:
    problem = quadratic_problem()
    params = make_params(problem)
    optimizer = build_optimizer({"name": "momo", "use_fstar": True, "lb": 0.5}, params)
    for _ in range(10):
        step_once(optimizer, params, problem)
        assert optimizer.state["shared"]["lb"].item() >= 0.5


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("optimizer", "path"),
    [
        ({"name": "momo", "beta": 1.0}, "optimizer.beta"),
        ({"name": "momo", "lb": math.inf}, "optimizer.lb"),
        ({"name": "momo", "weight_decay": -1}, "optimizer.weight_decay"),
        ({"name": "momo_adam", "betas": [0.9, 1.0]}, "optimizer.betas[1]"),
        ({"name": "momo_adam", "eps": 0}, "optimizer.eps"),
    ],
)
def test_bad_settings_are_rejected(optimizer: dict, path: str) -> None:
    assert_spec_error(optimizer, path)


@pytest.mark.parametrize("optimizer", [{"name": "momo"}, {"name": "momo_adam", "lr": 0.05}])
def test_trains_a_tiny_job(optimizer: dict) -> None:
    train_tiny_job(optimizer, min_accuracy=0.5)
