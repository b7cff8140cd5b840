"""LARS: NumPy reference, the formulas file's worked examples (§14), layer-wise rate properties."""

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
from tests.reference.lars import reference
from trainlib import build_optimizer

SPECS = [
    {"name": "lars"},  # paper settings: η_T = 1e-3, β = 5e-4, μ = 0.9 (lr 1.0)
    {
        "name": "lars",
        "lr": 2.0,
        "weight_decay": 1e-2,
        "momentum": 0.8,
        "trust_coefficient": 0.01,
        "eps": 1e-3,
    },
    {"name": "lars", "lr": 0.5, "trust_clip": True, "trust_coefficient": 0.5, "exclude_1d": True},
]


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("spec", SPECS)
def test_matches_the_numpy_reference(spec: dict, foreach: bool) -> None:
    assert_follows_reference(with_uniform_decay({**spec, "foreach": foreach}), reference)


WORKED = {"name": "lars", "lr": 0.1, "weight_decay": 5e-4, "momentum": 0.9,
          "trust_coefficient": 1e-3}  # fmt: skip


@pytest.mark.parametrize("foreach", [False, True])
def test_worked_example_fixture_a(foreach: bool) -> None:
    t1, t2 = steps_with_gradients(
        {**WORKED, "foreach": foreach}, [1.0, -2.0], [[0.5, -1.0], [-0.3, 0.2]]
    )
    np.testing.assert_allclose(t1, [0.9999, -1.9998], atol=1e-9)
    np.testing.assert_allclose(t2, [0.9999951494, -1.9997430208], atol=1e-9)


@pytest.mark.parametrize("foreach", [False, True])
def test_worked_example_fixture_b(foreach: bool) -> None:
    w1, w2 = steps_with_gradients(
        {**WORKED, "foreach": foreach},
        [[1, 2], [3, -1]],
        [[[0.4, -0.2], [0.1, 0.3]], [[0.2, 0.1], [-0.1, 0.5]]],
    )
    np.testing.assert_allclose(w1, [[0.9997178015, 2.0001402185], [2.9999284815, -1.0002110324]],
                               atol=1e-9)  # fmt: skip
    np.testing.assert_allclose(w2, [[0.9993248368, 2.0001964022], [2.9999323948, -1.0007472134]],
                               atol=1e-9)  # fmt: skip


@pytest.mark.parametrize("spec", SPECS)
def test_foreach_and_single_tensor_paths_agree(spec: dict) -> None:
    assert_foreach_matches_single(with_uniform_decay(spec), quadratic_problem(seed=1))


@pytest.mark.parametrize("spec", SPECS)
def test_resumes_bit_identically(spec: dict) -> None:
    assert_resumes_bit_identically(with_uniform_decay(spec), quadratic_problem(seed=2))


@pytest.mark.parametrize("foreach", [False, True])
def test_parameter_without_gradient_is_untouched(foreach: bool) -> None:
    assert_untouched_without_grad({"name": "lars", "foreach": foreach, "groups": {"no_decay": []}})


# Tuned: η_T = 0.01, lr 1, no decay. Each step is at most lr·η_T‖θ‖ long (before momentum), so
# like LAMB it cannot settle closer than that without an lr schedule, and it slows down where ‖θ‖
# is small (Rosenbrock's valley passes the origin): the Rosenbrock threshold is weaker for that.
TUNED = {"name": "lars", "lr": 1.0, "weight_decay": 0.0, "trust_coefficient": 0.01}


def test_converges_on_rosenbrock() -> None:
    assert minimise(TUNED, rosenbrock, [-1.5, 2.0], 1000) < 0.5  # from 12.5


def test_converges_on_beale() -> None:
    assert minimise(TUNED, beale, [1.0, 1.0], 1000) < 1e-3  # from 14.2


def test_converges_on_logistic_regression() -> None:
    assert minimise(TUNED, logistic_loss(), [0.0, 0.0, 0.0], 1000) < 0.01  # from log 2


# --- paper properties ---------------------------------------------------------------------------


@pytest.mark.parametrize("foreach", [False, True])
def test_each_layer_moves_lr_times_trust_times_its_norm(foreach: bool) -> None:
    """β = 0: the first step is γ η_T ‖θ‖ g/‖g‖, so ‖Δθ‖ = γ η_T ‖θ‖ whatever the gradient."""
    gen = torch.Generator().manual_seed(0)
    params = [nn.Parameter(torch.randn(*s, generator=gen, dtype=torch.float64) * k)
              for s, k in (((8, 4), 0.1), ((4,), 3.0), ((2, 3, 2, 2), 20.0))]  # fmt: skip
    spec = {"name": "lars", "lr": 2.0, "weight_decay": 0.0, "trust_coefficient": 0.01,
            "foreach": foreach}  # fmt: skip
    optimizer = build_optimizer(spec, [(f"p{i}", p) for i, p in enumerate(params)])
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, dtype=torch.float64) * 1e3
    optimizer.step()
    for b, p in zip(before, params, strict=True):
        assert (p.detach() - b).norm().item() == pytest.approx(0.02 * b.norm().item(), rel=1e-12)


def test_lr_is_inside_the_momentum_buffer() -> None:
    """Paper form v ← μv + γ_t·local·(g + βθ), θ ← θ − v: a changed lr does not rescale the
    velocity already accumulated (torch-style buffers would apply the new lr to all of it)."""
    w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    spec = {"name": "lars", "lr": 1.0, "weight_decay": 0.0, "momentum": 0.9,
            "trust_coefficient": 0.1}  # fmt: skip
    optimizer = build_optimizer(spec, [("w", w)])
    g = torch.tensor([0.5, -1.0], dtype=torch.float64)  # local = 0.1·‖θ‖/‖g‖ = 0.2
    w.grad = g.clone()
    optimizer.step()
    v1 = 1.0 * 0.2 * g
    torch.testing.assert_close(w.detach(), torch.tensor([1.0, -2.0]).double() - v1)
    optimizer.param_groups[0]["lr"] = 0.0  # a schedule drops the lr to 0: momentum keeps going
    before = w.detach().clone()
    w.grad = g.clone()
    optimizer.step()
    torch.testing.assert_close(w.detach(), before - 0.9 * v1, rtol=1e-14, atol=1e-15)


def test_zero_norm_tensor_takes_a_plain_sgd_step() -> None:
    b = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    optimizer = build_optimizer({"name": "lars", "lr": 0.1}, [("b", b)])
    b.grad = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    optimizer.step()  # local = 1
    torch.testing.assert_close(b.detach(), -0.1 * b.grad, rtol=1e-15, atol=0)


def test_trust_clip_caps_the_layer_rate_at_lr() -> None:
    """LARC: rate = min(local, γ). A large trust coefficient makes local > γ: plain SGD at γ."""
    w = nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
    spec = {"name": "lars", "lr": 0.1, "weight_decay": 0.0, "trust_coefficient": 1.0,
            "trust_clip": True}  # fmt: skip
    optimizer = build_optimizer(spec, [("w", w)])
    w.grad = torch.tensor([0.3, 0.4], dtype=torch.float64)  # local = 5/0.5 = 10 > γ
    optimizer.step()
    torch.testing.assert_close(w.detach(), torch.tensor([2.97, 3.96], dtype=torch.float64))


def test_exclude_1d_gives_vectors_plain_momentum_sgd() -> None:
    b = nn.Parameter(torch.tensor([5.0, -5.0], dtype=torch.float64))
    spec = {"name": "lars", "lr": 0.1, "weight_decay": 0.0, "exclude_1d": True}
    optimizer = build_optimizer(spec, [("b", b)])
    b.grad = torch.tensor([1.0, 2.0], dtype=torch.float64)
    optimizer.step()
    torch.testing.assert_close(b.detach(), torch.tensor([4.9, -5.2], dtype=torch.float64))


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("optimizer", "path"),
    [
        ({"name": "lars", "momentum": 1.0}, "optimizer.momentum"),
        ({"name": "lars", "trust_coefficient": 0}, "optimizer.trust_coefficient"),
        ({"name": "lars", "eps": -1e-8}, "optimizer.eps"),
    ],
)
def test_bad_settings_are_rejected(optimizer: dict, path: str) -> None:
    assert_spec_error(optimizer, path)


def test_trains_a_tiny_job() -> None:
    train_tiny_job({"name": "lars", "lr": 1.0, "trust_coefficient": 0.01}, min_accuracy=0.5)
