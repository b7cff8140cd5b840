"""adamp and sgdp (AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant
Weights), clovaai/AdamP v0.3.0 semantics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tests.optim.helpers import (
    Arrays,
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
    with_uniform_decay,
)
from tests.reference import adamp as adamp_ref
from tests.reference import sgdp as sgdp_ref
from trainlib import build_optimizer


@dataclass(frozen=True)
class RowNormalised:
    """L = Σ ½ a ⊙ (θ_r/‖θ_r‖ − c)² over output rows for tensors with ndim > 1 (as a weight
    followed by a normalisation layer): scale-invariant, so ∇L ⟂ θ_r for every row. 1-D tensors
    keep the plain quadratic."""

    init: Arrays
    a: Arrays
    c: Arrays

    def grad(self, theta: Arrays) -> Arrays:
        out = {}
        for k, x in theta.items():
            if x.ndim <= 1:
                out[k] = self.a[k] * (x - self.c[k])
                continue
            rows = x.reshape(x.shape[0], -1)
            norm = np.linalg.norm(rows, axis=1, keepdims=True)
            unit = rows / norm
            outer = (self.a[k] * (unit.reshape(x.shape) - self.c[k])).reshape(rows.shape)
            radial = (outer * unit).sum(axis=1, keepdims=True) * unit
            out[k] = ((outer - radial) / norm).reshape(x.shape)
        return out


def row_normalised(seed: int = 0) -> RowNormalised:
    q = quadratic_problem(seed)
    return RowNormalised(q.init, q.a, q.c)


def injected_trajectory(spec: dict[str, Any], problem: Any, steps: int) -> list[Arrays]:
    """Like helpers.trajectory, with the problem's NumPy gradient injected as p.grad."""
    params = [
        (k, nn.Parameter(torch.tensor(v, dtype=torch.float64))) for k, v in problem.init.items()
    ]
    optimizer = build_optimizer(spec, params)
    out = []
    for _ in range(steps):
        grads = problem.grad({k: p.detach().numpy() for k, p in params})
        for k, p in params:
            p.grad = torch.tensor(grads[k], dtype=torch.float64)
        optimizer.step()
        out.append({k: p.detach().numpy().copy() for k, p in params})
    return out


# (spec, reference, problem): quadratic (projection rarely triggers, δ = 1 makes it trigger on
# some tensors) and row-normalised (always triggers on ≥2-D tensors)
CASES: dict[str, tuple[dict[str, Any], Callable[..., Any], Callable[[], Any]]] = {
    "adamp": (
        {"name": "adamp", "lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-3, "weight_decay": 0.1},
        adamp_ref.reference, quadratic_problem,
    ),
    "adamp-nesterov-delta1": (
        {"name": "adamp", "lr": 0.05, "eps": 1e-6, "weight_decay": 0.1, "nesterov": True,
         "delta": 1.0, "wd_ratio": 0.3},
        adamp_ref.reference, quadratic_problem,
    ),
    "adamp-scale-invariant": (
        {"name": "adamp", "lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-3, "weight_decay": 0.1},
        adamp_ref.reference, row_normalised,
    ),
    "sgdp": (
        {"name": "sgdp", "lr": 0.05, "momentum": 0.9, "dampening": 0.2, "weight_decay": 0.05},
        sgdp_ref.reference, quadratic_problem,
    ),
    "sgdp-nesterov-delta1": (
        {"name": "sgdp", "lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.05,
         "delta": 1.0, "wd_ratio": 0.3, "eps": 1e-6},
        sgdp_ref.reference, quadratic_problem,
    ),
    "sgdp-scale-invariant": (
        {"name": "sgdp", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.05},
        sgdp_ref.reference, row_normalised,
    ),
}  # fmt: skip


def spec_of(case: str, **extra: Any) -> dict[str, Any]:
    return with_uniform_decay({**CASES[case][0], **extra})


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("foreach", [False, True])
def test_matches_numpy_reference(case: str, foreach: bool) -> None:
    spec, reference, make_problem = CASES[case]
    problem = make_problem()
    ours = injected_trajectory(spec_of(case, foreach=foreach), problem, 20)
    assert_matches_reference(ours, reference(spec, problem, 20), rtol=1e-6)


@pytest.mark.parametrize("case", ["adamp-nesterov-delta1", "sgdp-nesterov-delta1"])
def test_delta_one_cases_exercise_both_branches(case: str) -> None:
    """Guard for the reference test above: with δ = 1 some ≥2-D steps are projected, some not."""
    spec, _, make_problem = CASES[case]
    problem = make_problem()
    theta = {k: v.copy() for k, v in problem.init.items()}
    outcomes = set()
    for step in injected_trajectory(spec_of(case), problem, 20):
        grads = problem.grad(theta)
        for k in ("layer.weight", "conv.weight"):
            _, invariant = adamp_ref.project(theta[k], grads[k], grads[k], spec["delta"], 1e-8)
            outcomes.add(invariant)
        theta = step
    assert outcomes == {True, False}


# --- worked examples (formulas-optimizers.md §7) -------------------------------------------------

W0 = [[1.0, 2.0], [3.0, -1.0]]
G1 = [[0.4, -0.2], [0.1, 0.3]]  # each row ⟂ the matching row of W0
G2 = [[0.2, 0.1], [-0.1, 0.5]]


@pytest.mark.parametrize("foreach", [False, True])
def test_adamp_worked_example_fixture_b(foreach: bool) -> None:
    spec = {"name": "adamp", "lr": 0.1, "weight_decay": 0.1, "foreach": foreach}
    w1, w2 = steps_with_gradients(spec, W0, [G1, G2])
    # step 1: channel view triggers; decay 1 − 0.1·0.1·0.1; step size η/(1 − β1) = 1
    projected = 0.999 * np.array(W0) - w1
    np.testing.assert_allclose(
        projected, [[0.1199999958, -0.0599999984], [0.0399999984, 0.1199999939]], atol=1e-9
    )
    np.testing.assert_allclose(w1, [[0.8790000042, 2.0579999984], [2.9570000016, -1.1189999939]],
                               atol=1e-9)  # fmt: skip
    # step 2: no view triggers: full decay, no projection
    np.testing.assert_allclose(w2, [[0.7769920432, 2.0640537007], [2.932693159, -1.2060891775]],
                               atol=1e-9)  # fmt: skip


@pytest.mark.parametrize("foreach", [False, True])
def test_adamp_on_a_vector_is_torch_adamw(foreach: bool) -> None:
    spec = {"name": "adamp", "lr": 0.1, "weight_decay": 0.1, "foreach": foreach}
    _, theta2 = steps_with_gradients(spec, [1.0, -2.0], [[0.5, -1.0], [-0.3, 0.2]])
    np.testing.assert_allclose(theta2, [0.8619501989, -1.810097394], atol=1e-9)


@pytest.mark.parametrize("foreach", [False, True])
def test_sgdp_worked_example_fixture_b(foreach: bool) -> None:
    spec = {"name": "sgdp", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3, "foreach": foreach}
    w1, w2 = steps_with_gradients(spec, W0, [G1, G2])
    # decay 1 − 0.1·1e-3·0.1/(1 − 0.9) = 0.9999 (wd_ratio and the 1/(1 − μ) factor)
    np.testing.assert_allclose(w1, [[0.9599, 2.0198], [2.9897, -1.0299]], atol=1e-9)
    np.testing.assert_allclose(w2, [[0.9029401, 2.0257802], [2.9877103, -1.1058701]], atol=1e-9)


def test_sgdp_dampening_applies_at_the_first_step() -> None:
    """The buffer starts at zero: b1 = (1 − τ) g1 (torch SGD would take b1 = g1)."""
    spec = {"name": "sgdp", "lr": 0.1, "momentum": 0.9, "dampening": 0.5}
    (theta1,) = steps_with_gradients(spec, [1.0, -2.0], [[0.5, -1.0]])
    np.testing.assert_allclose(theta1, [0.975, -1.95], atol=1e-15)


# --- paper properties ----------------------------------------------------------------------------


def aligned_gradients(w0: np.ndarray, steps: int) -> list[np.ndarray]:
    """Gradients far from orthogonal to the weights (|cos| ≈ 1 per row)."""
    rng = np.random.default_rng(3)
    return [w0 * (1.0 + 0.1 * t) + 0.05 * rng.normal(size=w0.shape) for t in range(steps)]


def test_adamp_leaves_non_scale_invariant_weights_with_the_adamw_update() -> None:
    """No view triggers ⇒ AdamP is AdamW (decay θ(1 − ηλ), ε on the corrected root)."""
    w0 = np.random.default_rng(0).normal(size=(4, 3, 2, 2))
    grads = aligned_gradients(w0, 10)
    ours = steps_with_gradients(
        {"name": "adamp", "lr": 0.01, "weight_decay": 0.1, "eps": 1e-6}, w0, grads
    )
    p = nn.Parameter(torch.tensor(w0))
    adamw = torch.optim.AdamW([p], lr=0.01, weight_decay=0.1, eps=1e-6)
    for g, mine in zip(grads, ours, strict=True):
        p.grad = torch.tensor(g)
        adamw.step()
        np.testing.assert_allclose(mine, p.detach().numpy(), rtol=1e-14, atol=1e-15)


def test_sgdp_leaves_non_scale_invariant_weights_with_the_sgd_update() -> None:
    """No projection and λ = 0 ⇒ SGDP is torch SGD (Nesterov, no dampening: same first step)."""
    w0 = np.random.default_rng(1).normal(size=(3, 5))
    grads = aligned_gradients(w0, 10)
    spec = {"name": "sgdp", "lr": 0.01, "momentum": 0.9, "nesterov": True}
    ours = steps_with_gradients(spec, w0, grads)
    p = nn.Parameter(torch.tensor(w0))
    sgd = torch.optim.SGD([p], lr=0.01, momentum=0.9, nesterov=True)
    for g, mine in zip(grads, ours, strict=True):
        p.grad = torch.tensor(g)
        sgd.step()
        np.testing.assert_allclose(mine, p.detach().numpy(), rtol=1e-14, atol=1e-15)


def assert_orthogonal_rows(step: np.ndarray, theta: np.ndarray) -> None:
    """cos(step_r, θ_r) = 0 per output row, up to O(ε/‖θ_r‖): the authors' unit vector is
    θ_r/(‖θ_r‖ + ε), so a radial part of relative size ε/‖θ_r‖ survives the projection."""
    rows = theta.reshape(theta.shape[0], -1)
    step = step.reshape(rows.shape)
    norms = np.linalg.norm(step, axis=1) * np.linalg.norm(rows, axis=1)
    np.testing.assert_allclose((step * rows).sum(axis=1) / norms, 0.0, atol=1e-7)


@pytest.mark.parametrize("name", ["adamp", "sgdp"])
@pytest.mark.parametrize("foreach", [False, True])
def test_update_to_scale_invariant_weights_is_orthogonal_to_each_row(
    name: str, foreach: bool
) -> None:
    """Fixture B step 1, then 10 steps on row-normalised losses (a matrix and a conv kernel):
    the update (after removing the radial decay) is ⟂ every output row of θ_{t−1}."""
    lam, lr, mu = 0.1, 0.05, 0.9
    extra = {"momentum": mu} if name == "sgdp" else {}
    spec = with_uniform_decay(
        {"name": name, "lr": lr, "weight_decay": lam, "foreach": foreach, **extra}
    )
    decay = 1 - lr * lam * 0.1 / ((1 - mu) if name == "sgdp" else 1)  # wd_ratio 0.1

    (w1,) = steps_with_gradients({**spec, "lr": lr}, W0, [G1])
    assert_orthogonal_rows(w1 - decay * np.array(W0), np.array(W0))

    problem = row_normalised(seed=4)
    previous = problem.init
    for theta in injected_trajectory(spec, problem, 10):
        for k in ("layer.weight", "conv.weight"):
            assert_orthogonal_rows(theta[k] - decay * previous[k], previous[k])
        previous = theta


@pytest.mark.parametrize(("name", "plain"), [("adamp", "adamw"), ("sgdp", "sgd")])
def test_projection_slows_the_growth_of_scale_invariant_weights(name: str, plain: str) -> None:
    """The paper's claim: momentum makes the update radial-heavy and inflates ‖θ‖ on
    scale-invariant weights (shrinking the effective step); the projection keeps the growth
    second order, ‖θ_t‖² = ‖θ_{t−1}‖² + ‖Δ‖²."""
    settings = {"lr": 0.05, "momentum": 0.9} if name == "sgdp" else {"lr": 0.05}
    problem = row_normalised(seed=5)
    norms = {}
    for opt in (name, plain):
        spec = with_uniform_decay({"name": opt, **settings, "weight_decay": 0.0})
        last = injected_trajectory(spec, problem, 60)[-1]
        norms[opt] = np.linalg.norm(last["conv.weight"]) / np.linalg.norm(
            problem.init["conv.weight"]
        )
    assert norms[name] - 1 < 0.5 * (norms[plain] - 1), norms


def test_layer_view_triggers_when_the_channel_view_does_not() -> None:
    """Rows with |cos| = 1, whole tensor ⟂ (the layer view): project the whole tensor."""
    w0 = np.array([[1.0, 0.0], [1.0, 0.0]])
    g = np.array([[1.0, 0.0], [-1.0, 0.0]])
    spec = {"name": "sgdp", "lr": 0.1, "weight_decay": 0.1}
    (w1,) = steps_with_gradients(spec, w0, [g])
    # ⟨g, w0⟩ = 0: the update is unchanged by the projection, the decay uses wd_ratio
    np.testing.assert_allclose(w1, w0 * (1 - 0.1 * 0.1 * 0.1) - 0.1 * g, atol=1e-15)
    # a non-orthogonal update component is removed for the tensor as a whole
    w0b = np.array([[1.0, 1.0], [2.0, 2.0]])
    gb = np.array([[2.0, 2.0], [-1.0, -1.0]])  # Adam's update ≈ sign(g): not ⟂ w0b
    (w1b,) = steps_with_gradients({"name": "adamp", "lr": 0.1, "betas": (0.0, 0.999)}, w0b, [gb])
    step = (w1b - w0b).reshape(1, -1)
    assert_orthogonal_rows(step, w0b.reshape(1, -1))
    per_row = (step.reshape(2, 2) * w0b).sum(axis=1)
    assert np.abs(per_row).min() > 1e-3  # the rows themselves are not ⟂


@pytest.mark.parametrize("name", ["adamp", "sgdp"])
def test_vectors_are_never_projected_and_get_the_full_decay(name: str) -> None:
    """A gradient ⟂ a 1-D θ: no projection for ndim ≤ 1, decay factor 1 − ηλ(/(1 − μ))."""
    spec = {"name": name, "lr": 0.1, "weight_decay": 0.1}
    (theta1,) = steps_with_gradients(spec, [1.0, 1.0], [[1.0, -1.0]])
    # both first steps are 0.1·[1, −1] (Adam's ≈ η sign(g)); 0.999 would mean wd_ratio
    np.testing.assert_allclose(theta1, 0.99 * np.ones(2) - [0.1, -0.1], atol=1e-7)


# --- foreach, resume, parameters without gradients ---------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_foreach_and_single_tensor_paths_agree(case: str) -> None:
    problem = CASES[case][2]()
    single = injected_trajectory(spec_of(case, foreach=False), problem, 10)
    multi = injected_trajectory(spec_of(case, foreach=True), problem, 10)
    assert_matches_reference(multi, single, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["adamp", "adamp-nesterov-delta1", "sgdp", "sgdp-nesterov-delta1"])
@pytest.mark.parametrize("foreach", [False, True])
def test_resumes_bit_identically(case: str, foreach: bool) -> None:
    assert_resumes_bit_identically(spec_of(case, foreach=foreach), quadratic_problem(seed=6))


@pytest.mark.parametrize("name", ["adamp", "sgdp"])
@pytest.mark.parametrize("foreach", [False, True])
def test_parameter_without_gradient_is_untouched_and_gets_no_state(
    name: str, foreach: bool
) -> None:
    optimizer = assert_untouched_without_grad(
        {"name": name, "weight_decay": 0.1, "foreach": foreach}
    )
    assert any(optimizer.state.values())


def test_defaults_are_the_authors() -> None:
    p = [nn.Parameter(torch.zeros(2, 2))]
    adamp = build_optimizer({"name": "adamp"}, p).param_groups[0]
    assert (adamp["lr"], adamp["betas"], adamp["eps"], adamp["weight_decay"]) == (
        1e-3, (0.9, 0.999), 1e-8, 0.0
    )  # fmt: skip
    assert (adamp["delta"], adamp["wd_ratio"], adamp["nesterov"]) == (0.1, 0.1, False)
    sgdp = build_optimizer({"name": "sgdp"}, p).param_groups[0]
    assert (sgdp["lr"], sgdp["momentum"], sgdp["dampening"], sgdp["nesterov"]) == (
        0.1, 0.0, 0.0, False
    )  # fmt: skip
    assert (sgdp["eps"], sgdp["delta"], sgdp["wd_ratio"]) == (1e-8, 0.1, 0.1)


# --- convergence (1-D parameters: no projection, so these test the Adam/SGD parts) -------------


@pytest.mark.parametrize(
    ("name", "settings", "problem", "x0", "steps", "threshold"),
    [
        ("adamp", {"lr": 0.02}, rosenbrock, [-1.5, 2.0], 3000, 1e-3),
        ("adamp", {"lr": 0.02}, beale, [1.0, 1.0], 2000, 1e-3),
        ("adamp", {"lr": 0.1}, logistic_loss(), [0.0, 0.0, 0.0], 500, 0.08),
        ("sgdp", {"lr": 1e-3, "momentum": 0.9}, rosenbrock, [-1.5, 2.0], 3000, 1e-3),
        ("sgdp", {"lr": 1e-2, "momentum": 0.9}, beale, [1.0, 1.0], 2000, 1e-3),
        ("sgdp", {"lr": 0.5, "momentum": 0.9, "nesterov": True}, logistic_loss(), [0.0, 0.0, 0.0],
         500, 0.08),
    ],
    ids=["adamp-rosenbrock", "adamp-beale", "adamp-logistic", "sgdp-rosenbrock", "sgdp-beale",
         "sgdp-logistic"],
)  # fmt: skip
def test_converges(
    name: str, settings: dict, problem: Callable, x0: list[float], steps: int, threshold: float
) -> None:
    start = float(problem(torch.tensor(x0, dtype=torch.float64)))
    final = minimise({"name": name, **settings}, problem, x0, steps)
    assert final < threshold < start


def test_converges_on_a_scale_invariant_problem() -> None:
    """The row-normalised loss (minimum: rows pointing along c's rows) drops for both."""
    problem = row_normalised(seed=8)

    def loss(theta: Arrays) -> float:
        total = 0.0
        for k, x in theta.items():
            if x.ndim <= 1:
                total += float((0.5 * problem.a[k] * (x - problem.c[k]) ** 2).sum())
            else:
                rows = x.reshape(x.shape[0], -1)
                unit = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).reshape(x.shape)
                total += float((0.5 * problem.a[k] * (unit - problem.c[k]) ** 2).sum())
        return total

    start = loss(problem.init)
    for spec in ({"name": "adamp", "lr": 0.02}, {"name": "sgdp", "lr": 0.1, "momentum": 0.9}):
        final = loss(injected_trajectory(spec, problem, 300)[-1])
        assert final < 0.7 * start, (spec, start, final)


# --- validation and a real job -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("optimizer", "path"),
    [
        ({"name": "adamp", "betas": [0.9, 1.0]}, "optimizer.betas"),
        ({"name": "adamp", "delta": 0.0}, "optimizer.delta"),
        ({"name": "adamp", "wd_ratio": 1.5}, "optimizer.wd_ratio"),
        ({"name": "adamp", "eps": 0.0}, "optimizer.eps"),
        ({"name": "sgdp", "momentum": 1.0}, "optimizer.momentum"),
        ({"name": "sgdp", "dampening": -0.1}, "optimizer.dampening"),
    ],
)
def test_bad_settings_are_rejected_with_their_path(optimizer: dict, path: str) -> None:
    assert_spec_error(optimizer, path)


@pytest.mark.parametrize(
    "optimizer",
    [
        {"name": "adamp", "lr": 3e-3, "weight_decay": 1e-2},
        {"name": "sgdp", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-5},
    ],
    ids=["adamp", "sgdp"],
)
def test_trains_a_tiny_job(optimizer: dict) -> None:
    train_tiny_job(optimizer, min_accuracy=0.5)
