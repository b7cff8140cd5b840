"""Penalties: l2_init, wasserstein_init, spectral, orthogonality, norm_loss, group_sparsity,
lobster, grad_norm_penalty, confidence_penalty, z_loss, activation_kurtosis.

Worked examples and identities come from formulas-regularizers.md §1; oracle checks run in
float64 with rtol 1e-6.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.regularizers.helpers import roundtrip
from trainlib import parse_spec, train
from trainlib.data import DataInfo
from trainlib.registries import REGULARIZERS
from trainlib.regularizers.activation_kurtosis import kurtosis
from trainlib.regularizers.base import PenaltyContext, Regularizer, SetupContext
from trainlib.regularizers.grad_norm_penalty import grad_norm
from trainlib.regularizers.group_sparsity import group_envelope, group_norms
from trainlib.regularizers.init_penalties import l2_init_value, wasserstein_value
from trainlib.regularizers.lobster import lobster_update
from trainlib.regularizers.norm_loss import norm_loss_term
from trainlib.regularizers.orthogonality import gram_residual, orthogonality_term, srip_term
from trainlib.regularizers.output_penalties import entropy
from trainlib.regularizers.spectral import sigma_max, spectral_value
from trainlib.spec import SpecError

D = torch.float64
RTOL = 1e-6
SETUP = SetupContext(
    info=DataInfo((6,), 3),
    total_steps=100,
    steps_per_epoch=10,
    batch_size=8,
    train_size=80,
    seed=0,
)


def build(name: str, **settings: Any) -> Regularizer:
    reg: Regularizer = REGULARIZERS.build({"name": name, **settings}, SETUP)
    reg.name = name
    return reg


def context(
    model: nn.Module,
    x: torch.Tensor | None = None,
    *,
    logits: torch.Tensor | None = None,
    step: int = 0,
    base_loss: torch.Tensor | None = None,
) -> PenaltyContext:
    x = torch.zeros(2, 6, dtype=D) if x is None else x
    if logits is None:
        logits = torch.zeros(len(x), 3, dtype=D)
    targets = torch.zeros(len(logits), dtype=torch.long)
    if base_loss is None:
        base_loss = torch.zeros((), dtype=D)
    indices = torch.arange(len(logits))
    return PenaltyContext(model, x, logits, targets, indices, step, base_loss)


def penalty(reg: Regularizer, model: nn.Module, step: int = 0) -> torch.Tensor:
    value = reg.penalty(context(model, step=step))
    assert value is not None
    return value


def close(actual: torch.Tensor | float, expected: float) -> None:
    assert float(torch.as_tensor(actual).detach()) == pytest.approx(expected, rel=RTOL, abs=1e-12)


class Vector(nn.Module):
    """One free parameter, so hand-computed examples map one-to-one."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(values, dtype=D))


def mlp(seed: int = 0, norm: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(6, 5)]
    if norm:
        layers.append(nn.LayerNorm(5))
    layers += [nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)]
    return nn.Sequential(*layers).to(D)


# ---------------------------------------------------------------- resumption (shared) ----------

BATCH_X = torch.randn(16, 6, generator=torch.Generator().manual_seed(3), dtype=D)
BATCH_Y = torch.arange(16) % 3


def _train(model: nn.Module, reg: Regularizer, opt: torch.optim.Optimizer, steps: range) -> None:
    for step in steps:
        logits = model(BATCH_X)
        base = F.cross_entropy(logits, BATCH_Y)
        term = reg.penalty(context(model, BATCH_X, logits=logits, step=step, base_loss=base))
        loss = base if term is None else base + term
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        reg.after_step(model, opt, step)


def assert_resumes_bit_identically(factory: Callable[[], Regularizer], steps: int = 8) -> None:
    """k steps, checkpoint (model, optimizer, regularizer), rebuild everything from another
    seed, load, continue: the weights equal an uninterrupted run's bit for bit."""
    model = mlp(0, norm=True)
    reg = factory()
    reg.configure_model(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    _train(model, reg, opt, range(steps))

    model_a = mlp(0, norm=True)
    reg_a = factory()
    reg_a.configure_model(model_a)
    opt_a = torch.optim.Adam(model_a.parameters(), lr=1e-2)
    _train(model_a, reg_a, opt_a, range(steps // 2))
    saved = roundtrip(
        {"model": model_a.state_dict(), "opt": opt_a.state_dict(), "reg": reg_a.state_dict()}
    )

    model_b = mlp(1, norm=True)  # another init: θ₀ copies and vectors must come from the save
    reg_b = factory()
    reg_b.configure_model(model_b)
    model_b.load_state_dict(saved["model"])
    opt_b = torch.optim.Adam(model_b.parameters(), lr=1e-2)
    opt_b.load_state_dict(saved["opt"])
    reg_b.load_state_dict(saved["reg"])
    _train(model_b, reg_b, opt_b, range(steps // 2, steps))

    for (name, p), q in zip(model.named_parameters(), model_b.parameters(), strict=True):
        assert torch.equal(p, q), name


def assert_state_roundtrip(factory: Callable[[], Regularizer], warm_steps: int = 3) -> None:
    """state_dict -> fresh object -> load_state_dict: identical next outputs."""
    model = mlp(0, norm=True)
    reg = factory()
    reg.configure_model(model)
    for step in range(warm_steps):
        penalty(reg, model, step)
        with torch.no_grad():  # training moves the weights away from θ₀
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
    fresh = factory()
    fresh.configure_model(model)  # captures θ₀ / vectors from the current weights: wrong ones
    fresh.load_state_dict(roundtrip(reg.state_dict()))
    assert torch.equal(penalty(reg, model, warm_steps), penalty(fresh, model, warm_steps))
    mine, theirs = _flat(reg.state_dict()), _flat(fresh.state_dict())
    assert len(mine) == len(theirs) > 0
    assert all(torch.equal(x, y) for x, y in zip(mine, theirs, strict=True))


def _flat(state: Any) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for k in sorted(state) for t in _flat(state[k])]
    return []


STATEFUL: dict[str, Callable[[], Regularizer]] = {
    "l2_init": lambda: build("l2_init", strength=1e-2),
    "wasserstein_init": lambda: build("wasserstein_init", strength=1e-2),
    "spectral": lambda: build("spectral", strength=1e-2),
    "orthogonality-srip": lambda: build("orthogonality", variant="srip"),
}


@pytest.mark.parametrize("case", sorted(STATEFUL))
def test_state_round_trip(case: str) -> None:
    assert_state_roundtrip(STATEFUL[case])


@pytest.mark.parametrize("case", sorted(STATEFUL))
def test_resumed_run_equals_uninterrupted(case: str) -> None:
    assert_resumes_bit_identically(STATEFUL[case])


def test_state_of_another_model_is_refused() -> None:
    reg = build("l2_init")
    reg.configure_model(mlp(0))
    other = build("l2_init")
    other.configure_model(mlp(0, norm=True))
    with pytest.raises(ValueError, match="θ₀"):
        other.load_state_dict(reg.state_dict())


# ---------------------------------------------------------------- l2_init ----------------------


def test_l2_init_worked_example() -> None:
    model = Vector([0.5, 2.5])
    reg = build("l2_init", strength=0.01)
    reg.configure_model(model)
    with torch.no_grad():
        model.w.copy_(torch.tensor([1.0, 2.0]))
    close(penalty(reg, model), 0.005)


def test_l2_init_is_zero_at_theta0_and_its_gradient_is_2_lambda_delta() -> None:
    model = mlp(0)
    reg = build("l2_init", strength=0.3)
    reg.configure_model(model)
    close(penalty(reg, model), 0.0)
    start = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    penalty(reg, model).backward()
    for p, p0 in zip(model.parameters(), start, strict=True):
        torch.testing.assert_close(p.grad, 2 * 0.3 * (p.detach() - p0), rtol=0, atol=1e-15)


def test_l2_init_with_zero_theta0_is_plain_l2() -> None:
    model = mlp(0)
    reg = build("l2_init", strength=0.01)
    reg.configure_model(model)
    reg.load_state_dict(
        {"theta0": {k: torch.zeros_like(v) for k, v in reg.state_dict()["theta0"].items()}}
    )
    plain = build("l2", strength=0.01, include_biases=True)
    torch.testing.assert_close(penalty(reg, model), penalty(plain, model), rtol=1e-12, atol=0)


def test_l2_init_can_leave_biases_out() -> None:
    model = mlp(0)
    reg = build("l2_init", include_biases=False)
    reg.configure_model(model)
    assert sorted(reg.state_dict()["theta0"]) == ["0.weight", "2.weight", "4.weight"]


def test_l2_init_gradcheck() -> None:
    theta = torch.randn(5, dtype=D, requires_grad=True)
    theta0 = torch.randn(5, dtype=D)
    assert torch.autograd.gradcheck(lambda t: l2_init_value([t], [theta0]), (theta,))


# ---------------------------------------------------------------- wasserstein_init -------------


def test_wasserstein_worked_example() -> None:
    theta, theta0 = torch.tensor([3.0, 1.0, 2.0], dtype=D), [1.0, 2.0, 4.0]
    for reduction, expected in (("sum", 1.0), ("mean", 1 / 3)):
        model = Vector(theta0)
        reg = build("wasserstein_init", strength=1.0, reduction=reduction)
        reg.configure_model(model)
        with torch.no_grad():
            model.w.copy_(theta)
        close(penalty(reg, model), expected)
    model = Vector(theta0)
    l2 = build("l2_init", strength=1.0)
    l2.configure_model(model)
    with torch.no_grad():
        model.w.copy_(theta)
    close(penalty(l2, model), 9.0)


def test_wasserstein_is_below_l2_init_and_permutation_invariant() -> None:
    model = mlp(0)
    w = build("wasserstein_init", strength=1.0)
    l2 = build("l2_init", strength=1.0)
    w.configure_model(model)
    l2.configure_model(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    before = penalty(w, model)
    assert before <= penalty(l2, model)
    with torch.no_grad():  # permuting entries inside each tensor (e.g. hidden units)
        for p in model.parameters():
            p.copy_(p.reshape(-1)[torch.randperm(p.numel())].reshape(p.shape))
    torch.testing.assert_close(penalty(w, model), before, rtol=1e-12, atol=0)


def test_wasserstein_is_zero_iff_the_multisets_are_equal() -> None:
    model = Vector([0.1, -2.0, 3.0, 0.5])
    reg = build("wasserstein_init", strength=1.0)
    reg.configure_model(model)
    with torch.no_grad():
        model.w.copy_(torch.tensor([3.0, 0.5, 0.1, -2.0]))
    close(penalty(reg, model), 0.0)
    with torch.no_grad():
        model.w[0] += 1e-3
    assert penalty(reg, model) > 0


def test_wasserstein_gradient_is_routed_to_positions() -> None:
    theta = torch.tensor([3.0, 1.0, 2.0], dtype=D, requires_grad=True)
    sorted0 = torch.tensor([1.0, 2.0, 4.0], dtype=D)
    wasserstein_value([theta], [sorted0]).backward()
    # sorted θ = [1, 2, 3] at positions [1, 2, 0]; only 3 vs 4 differs: 2(3 − 4) at position 0
    torch.testing.assert_close(theta.grad, torch.tensor([-2.0, 0.0, 0.0], dtype=D))
    for reduction in ("sum", "mean"):
        t = torch.randn(7, dtype=D, requires_grad=True)
        s0 = torch.sort(torch.randn(7, dtype=D)).values
        assert torch.autograd.gradcheck(
            lambda x, r=reduction, s0=s0: wasserstein_value([x], [s0], r), (t,)
        )


# ---------------------------------------------------------------- spectral ---------------------


def linear(weight: list[list[float]], bias: list[float]) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight)).to(D)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=D))
        layer.bias.copy_(torch.tensor(bias, dtype=D))
    return layer


def test_spectral_worked_example() -> None:
    model = linear([[2.0, 0.0], [0.0, 0.5]], [0.1, 0.0])
    reg = build("spectral", strength=1.0)
    reg.configure_model(model)
    close(penalty(reg, model), 9.0001)


def test_spectral_norm_layer_rule_and_exponent() -> None:
    model = nn.LayerNorm(2).to(D)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([2.0, 1.0]))
        model.bias.copy_(torch.tensor([0.1, 0.0]))
    reg = build("spectral", strength=1.0)
    reg.configure_model(model)
    close(penalty(reg, model), (4 - 1) ** 2 + 0.1**4)
    reg3 = build("spectral", strength=1.0, exponent=3)
    reg3.configure_model(model)
    close(penalty(reg3, model), (8 - 1) ** 2 + 0.1**6)
    off = build("spectral", strength=1.0, include_norm_layers=False)
    off.configure_model(model)
    assert off.penalty(context(model)) is None


def test_spectral_is_zero_on_orthogonal_weights_and_invariant_to_rotations() -> None:
    q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=D))
    model = linear(q.tolist(), [0.0] * 5)
    reg = build("spectral", strength=1.0)
    reg.configure_model(model)
    close(penalty(reg, model), 0.0)

    w = torch.randn(4, 6, dtype=D)
    left, _ = torch.linalg.qr(torch.randn(4, 4, dtype=D))
    right, _ = torch.linalg.qr(torch.randn(6, 6, dtype=D))
    values = []
    for weight in (w, left @ w @ right):
        m = linear(weight.tolist(), [0.0] * 4)
        r = build("spectral", strength=1.0, power_iterations=50)
        r.configure_model(m)
        values.append(penalty(r, m))
    torch.testing.assert_close(values[0], values[1], rtol=1e-9, atol=0)


def test_spectral_power_iteration_converges_to_the_top_singular_value() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(7, 5), nn.Linear(5, 9), nn.Conv2d(3, 4, 3)).to(D)
    reg = build("spectral", strength=1.0)
    reg.configure_model(model)
    for step in range(300):
        penalty(reg, model, step)
    sigmas = reg.sigmas()
    for name, p in model.named_parameters():
        if p.ndim >= 2:
            exact = torch.linalg.matrix_norm(p.detach().reshape(p.shape[0], -1), ord=2)
            close(sigmas[name], float(exact))


def test_spectral_vectors_advance_once_per_step() -> None:
    model = mlp(0)
    reg = build("spectral")
    reg.configure_model(model)
    penalty(reg, model, step=0)
    u = {k: v.clone() for k, v in reg.state_dict()["u"].items()}
    penalty(reg, model, step=0)  # a step strategy's second pass
    assert all(torch.equal(u[k], v) for k, v in reg.state_dict()["u"].items())
    penalty(reg, model, step=1)
    assert not all(torch.equal(u[k], v) for k, v in reg.state_dict()["u"].items())


def test_spectral_gradient_is_the_rank_one_formula() -> None:
    torch.manual_seed(5)
    model = nn.Linear(4, 3, bias=False).to(D)
    reg = build("spectral", strength=1.0, power_iterations=100)
    reg.configure_model(model)
    penalty(reg, model).backward()
    u, v = reg.state_dict()["u"]["weight"], reg.state_dict()["v"]["weight"]
    sigma = float(u @ model.weight.detach() @ v)
    expected = 2 * (sigma**2 - 1) * 2 * sigma * torch.outer(u, v)
    torch.testing.assert_close(model.weight.grad, expected, rtol=1e-10, atol=1e-12)


def test_spectral_gradcheck() -> None:
    w = torch.randn(3, 4, dtype=D, requires_grad=True)
    b = torch.randn(3, dtype=D, requires_grad=True)
    g = torch.randn(3, dtype=D, requires_grad=True)
    s = torch.randn(3, dtype=D, requires_grad=True)
    u = F.normalize(torch.randn(3, dtype=D), dim=0)
    v = F.normalize(torch.randn(4, dtype=D), dim=0)

    def fn(w: torch.Tensor, b: torch.Tensor, g: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return spectral_value([sigma_max(w, u, v)], [b], [g], [s], 2)

    assert torch.autograd.gradcheck(fn, (w, b, g, s))


# ---------------------------------------------------------------- orthogonality ----------------

ORTHO_VARIANTS = ("so", "dso", "mc", "srip")


def test_orthogonality_worked_example() -> None:
    # columns [1, 0] and [0, 2]: WᵀW − I = diag(0, 3)
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=D)
    b = torch.tensor([0.3, 0.7], dtype=D)
    close(orthogonality_term(w, "so"), 9.0)
    close(orthogonality_term(w, "dso"), 18.0)
    close(orthogonality_term(w, "mc"), 3.0)
    close(orthogonality_term(w, "srip", b), 9.0)  # one step already lands on σ(A)² here


def test_orthogonality_on_a_scaled_identity() -> None:
    c, n = 1.5, 4
    w = c * torch.eye(n, dtype=D)
    close(orthogonality_term(w, "so"), n * (c**2 - 1) ** 2)
    close(orthogonality_term(w, "srip", torch.rand(n, dtype=D)), (c**2 - 1) ** 2)


@pytest.mark.parametrize("variant", ORTHO_VARIANTS)
def test_orthogonality_is_zero_on_orthogonal_matrices(variant: str) -> None:
    q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=D))
    model = linear(q.tolist(), [0.0] * 5)
    reg = build("orthogonality", variant=variant, strength=1.0)
    reg.configure_model(model)
    close(penalty(reg, model), 0.0)


def test_soft_orthogonality_reaches_zero_with_orthonormal_filters_only() -> None:
    q, _ = torch.linalg.qr(torch.randn(5, 3, dtype=D))
    filters = q.t()  # 3 orthonormal filters over a fan-in of 5
    close(orthogonality_term(filters, "so"), 0.0)
    close(orthogonality_term(filters, "srip", torch.rand(3, dtype=D)), 0.0)
    close(orthogonality_term(filters, "dso"), 2.0)  # ‖W₂ᵀW₂ − I₅‖² = 5 − 3


def test_srip_one_step_by_hand_and_convergence() -> None:
    a = torch.tensor([[2.0, 1.0], [1.0, 0.0]], dtype=D)
    b = torch.tensor([1.0, 0.0], dtype=D)
    # A b = [2, 1], v = [2, 1]/√5, A v = [5, 2]/√5 → ‖A v‖² = 29/5
    close(srip_term(a, b, 1), 29 / 5)
    sigma = torch.linalg.matrix_norm(a, ord=2)
    close(srip_term(a, b, 200), float(sigma**2))
    # the smaller side: 3 filters over a fan-in of 7 use W₂W₂ᵀ (3 × 3), 7 over 3 use W₂ᵀW₂
    assert gram_residual(torch.randn(3, 7, dtype=D), "smaller").shape == (3, 3)
    assert gram_residual(torch.randn(7, 3, dtype=D), "smaller").shape == (3, 3)


@pytest.mark.parametrize("variant", ORTHO_VARIANTS)
def test_orthogonality_gradcheck(variant: str) -> None:
    w = torch.randn(3, 2, 2, dtype=D, requires_grad=True)  # a conv-like (out, in, k) tensor
    b = torch.rand(3, dtype=D)
    assert torch.autograd.gradcheck(lambda x: orthogonality_term(x, variant, b, 2), (w,))


def test_srip_draws_fresh_seeded_vectors() -> None:
    model = mlp(0)
    a, b = build("orthogonality"), build("orthogonality")
    a.configure_model(model)
    b.configure_model(model)
    first = penalty(a, model)
    assert torch.equal(first, penalty(b, model))  # same seed, same draws
    assert not torch.equal(first, penalty(a, model))  # a fresh vector on the next call


# ---------------------------------------------------------------- norm_loss --------------------


def test_norm_loss_worked_example() -> None:
    w = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=D)
    close(norm_loss_term(w, "norm", "sum"), 16.0)
    close(norm_loss_term(w, "norm", "mean"), 8.0)
    close(norm_loss_term(w, "squared_norm", "sum"), 576.0)
    model = linear(w.tolist(), [5.0, 5.0])
    reg = build("norm_loss", strength=0.5)
    reg.configure_model(model)
    close(penalty(reg, model), 0.5 * 8.0)  # biases are not penalised


@pytest.mark.parametrize("form", ["norm", "squared_norm"])
def test_norm_loss_identities(form: str) -> None:
    w = F.normalize(torch.randn(4, 3, 2, dtype=D).reshape(4, -1), dim=1).reshape(4, 3, 2)
    close(norm_loss_term(w, form), 0.0)
    w2 = torch.randn(4, 6, dtype=D)
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=D))
    torch.testing.assert_close(norm_loss_term(w2 @ q, form), norm_loss_term(w2, form))
    x = torch.randn(4, 6, dtype=D, requires_grad=True)
    for reduction in ("mean", "sum"):
        assert torch.autograd.gradcheck(lambda t, r=reduction: norm_loss_term(t, form, r), (x,))


# ---------------------------------------------------------------- group_sparsity ---------------


def test_group_lasso_worked_example() -> None:
    model = linear([[3.0, 4.0], [0.0, 0.0]], [1.0, 1.0])
    reg = build("group_sparsity", strength=0.1)
    reg.configure_model(model)
    close(penalty(reg, model), 0.1 * math.sqrt(2) * 5)


def test_group_lasso_special_cases() -> None:
    w = torch.randn(5, 1, dtype=D)  # singleton groups with c_g = 1: the L1 norm
    model = linear(w.tolist(), [0.0] * 5)
    reg = build("group_sparsity", strength=1.0, group_weight="one")
    reg.configure_model(model)
    close(penalty(reg, model), float(w.abs().sum()))
    w = torch.randn(1, 6, dtype=D)  # one group: λ‖w‖ (times √|g| by default)
    model = linear(w.tolist(), [0.0])
    reg = build("group_sparsity", strength=1.0)
    reg.configure_model(model)
    close(penalty(reg, model), math.sqrt(6) * float(w.norm()))
    conv = torch.randn(4, 3, 2, 2, dtype=D)  # input-channel groups of a conv: (out, kh, kw)
    expected = conv.transpose(0, 1).reshape(3, -1).norm(dim=1)
    torch.testing.assert_close(group_norms(conv, "inputs"), expected)


@pytest.mark.parametrize(
    ("v", "expected"),
    [([3.0, 1.0, 1.0], [12.5, 6.5, 5.5]), ([2.0, 2.0, 1.0], [12.5, 6.25, 4.5])],
)
def test_group_envelope_worked_examples(v: list[float], expected: list[float]) -> None:
    for k, value in enumerate(expected, start=1):
        close(group_envelope(torch.tensor(v, dtype=D), k), value)
        close(group_envelope(torch.tensor(v[::-1], dtype=D), k), value)


def test_group_envelope_identities_and_duality() -> None:
    gen = torch.Generator().manual_seed(6)
    for _ in range(20):
        v = torch.rand(7, generator=gen, dtype=D) * 3
        values = [group_envelope(v, k) for k in range(1, 8)]
        close(values[0], 0.5 * float(v.sum()) ** 2)
        close(values[-1], 0.5 * float(v.pow(2).sum()))
        assert all(a >= b - 1e-12 for a, b in itertools.pairwise(values))
        for k in range(1, 8):
            # S_k = ½‖v‖²_(k); the dual norm ‖u‖* = √(top-k Σ u_i²) gives ⟨g, v⟩ = 2 S_k and
            # ‖g‖* = ‖v‖_(k) at g = ∇S_k, and ⟨u, v⟩ ≤ ‖u‖*‖v‖_(k) for any u
            x = v.clone().requires_grad_(True)
            s = group_envelope(x, k)
            (g,) = torch.autograd.grad(s, x)
            norm_k = math.sqrt(2 * float(s.detach()))
            close(g @ v, 2 * float(s.detach()))
            close(torch.topk(g.abs(), k).values.pow(2).sum().sqrt(), norm_k)
            u = torch.randn(7, generator=gen, dtype=D)
            dual = torch.topk(u.abs(), k).values.pow(2).sum().sqrt()
            assert float(u @ v) <= float(dual) * norm_k + 1e-9


def test_group_sparsity_gradcheck() -> None:
    w = torch.randn(5, 3, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: group_norms(x, "filters").sum(), (w,))
    assert torch.autograd.gradcheck(lambda x: group_norms(x, "inputs").sum(), (w,))
    v = torch.tensor([3.1, 0.4, 1.7, 2.2, 0.9], dtype=D, requires_grad=True)
    for k in range(1, 6):
        assert torch.autograd.gradcheck(lambda x, k=k: group_envelope(x, k), (v,))


def test_k_level_layer_term() -> None:
    w = torch.tensor([[3.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=D)  # filter norms [3, 1, 1]
    model = linear(w.tolist(), [0.0] * 3)
    reg = build("group_sparsity", kind="k_level", strength=2.0, keep_fraction=0.5)
    reg.configure_model(model)
    close(penalty(reg, model), 2.0 * 6.5)  # k = ⌈0.5 · 3⌉ = 2


def test_group_lasso_proximal_step() -> None:
    model = linear([[3.0, 4.0], [0.01, 0.0], [0.0, -0.5]], [0.0] * 3)
    reg = build("group_sparsity", strength=0.1, proximal=True)
    reg.configure_model(model)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    value = penalty(reg, model)
    assert not value.requires_grad  # acts through the proximal step, only logged
    reg.after_step(model, opt, 0)
    t = 1.0 * 0.1 * math.sqrt(2)  # η λ c_g
    expected = torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.0, -0.5]], dtype=D)
    expected[0] *= 1 - t / 5
    expected[2] *= 1 - t / 0.5
    torch.testing.assert_close(model.weight.detach(), expected)
    assert torch.all(model.weight[1] == 0)


# ---------------------------------------------------------------- lobster ----------------------


def test_lobster_worked_example() -> None:
    for grad, expected in ((0.2, 0.46), (1.5, 0.5), (0.0, 0.45), (-0.2, 0.46)):
        p = torch.tensor([0.5], dtype=D)
        lobster_update(p, torch.tensor([grad], dtype=D), 0.1, rescaled=False)
        close(p, expected)
    p = torch.tensor([0.5, -2.0], dtype=D)
    lobster_update(p, torch.tensor([0.5, 2.0], dtype=D), 0.1, rescaled=True)
    # S = |g| / max|g| = [0.25, 1]: insensitivity [0.75, 0]
    torch.testing.assert_close(p, torch.tensor([0.5 - 0.1 * 0.5 * 0.75, -2.0], dtype=D))


def test_lobster_never_flips_signs_and_acts_after_the_step() -> None:
    model = mlp(0, norm=True)
    reg = build("lobster", strength=0.5)
    reg.configure_model(model)
    assert reg.penalty(context(model)) is None  # a weight rule, not a loss term
    loss = F.cross_entropy(model(BATCH_X), BATCH_Y)
    loss.backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    reg.after_step(model, torch.optim.SGD(model.parameters(), lr=0.0), 0)
    for name, p in model.named_parameters():
        if name.startswith("1."):  # LayerNorm: not a selected layer type
            assert torch.equal(p, before[name])
            continue
        g = p.grad
        expected = before[name] - 0.5 * before[name] * torch.relu(1 - g.abs())
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=0)
        assert torch.all(torch.sign(p) * torch.sign(before[name]) >= 0)


# ---------------------------------------------------------------- grad_norm_penalty ------------


class Scalar(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([value], dtype=D))


def test_grad_norm_penalty_worked_example() -> None:
    model = Scalar(2.0)
    reg = build("grad_norm_penalty", strength=0.05)
    base = 0.5 * model.theta.pow(2).sum()
    value = reg.penalty(context(model, base_loss=base))
    assert value is not None
    close(value, 0.05 * 2.0)
    (base + value).backward()
    close(model.theta.grad, 2.05)  # θ + λ sign θ; the two-pass formula: 0.5·2 + 0.5·2.1


def test_grad_norm_penalty_equals_the_finite_difference_form_on_a_quadratic() -> None:
    torch.manual_seed(7)
    m = torch.randn(4, 4, dtype=D)
    a = m @ m.t() + torch.eye(4, dtype=D)
    theta = torch.randn(4, dtype=D, requires_grad=True)
    lam, r = 0.05, 0.1
    loss = 0.5 * theta @ a @ theta
    total = loss + lam * grad_norm(loss, [theta])
    (exact,) = torch.autograd.grad(total, theta)
    with torch.no_grad():
        g = a @ theta
        g_hat = g / g.norm()
        alpha = lam / r
        two_pass = (1 - alpha) * g + alpha * (a @ (theta + r * g_hat))
    torch.testing.assert_close(exact, two_pass, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(exact, g + lam * a @ g_hat, rtol=1e-12, atol=1e-12)


def test_grad_norm_penalty_gradcheck_and_zero_gradient() -> None:
    x = torch.randn(5, 3, dtype=D)

    def fn(w: torch.Tensor) -> torch.Tensor:
        loss = torch.tanh(x @ w).pow(2).sum() + w.pow(4).sum()
        return grad_norm(loss, [w])

    w = torch.randn(3, 2, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (w,))
    at_min = torch.zeros(3, dtype=D, requires_grad=True)
    value = grad_norm(at_min.pow(2).sum(), [at_min])
    value.backward()
    assert torch.isfinite(at_min.grad).all() and float(value.detach()) < 1e-100


def test_grad_norm_penalty_covers_every_parameter_of_a_network() -> None:
    model = mlp(0)
    reg = build("grad_norm_penalty", strength=1.0)
    base = F.cross_entropy(model(BATCH_X), BATCH_Y)
    value = reg.penalty(context(model, base_loss=base))
    grads = torch.autograd.grad(base, list(model.parameters()), retain_graph=True)
    close(value, float(torch.cat([g.reshape(-1) for g in grads]).norm()))


# ---------------------------------------------------------------- confidence / z-loss ----------


def test_confidence_penalty_worked_example() -> None:
    beta = 0.2
    logits = torch.zeros(1, 2, dtype=D)
    reg = build("confidence_penalty", strength=beta)
    value = reg.penalty(context(nn.Module(), logits=logits))
    close(value, -beta * math.log(2))
    ce = F.cross_entropy(logits, torch.tensor([0]))
    close(ce + value, (1 - beta) * math.log(2))


def test_confidence_penalty_gradient_and_gradcheck() -> None:
    beta = 0.3
    logits = torch.randn(4, 5, dtype=D, requires_grad=True)
    reg = build("confidence_penalty", strength=beta)
    value = reg.penalty(context(nn.Module(), logits=logits))
    assert value is not None and value.dtype == D
    value.backward()
    p = torch.softmax(logits.detach(), -1)
    h = -(p * p.log()).sum(-1, keepdim=True)
    torch.testing.assert_close(logits.grad, beta * p * (p.log() + h) / 4)
    for threshold in (None, 1.0):
        hinge = build("confidence_penalty", strength=beta, threshold=threshold)

        def fn(z: torch.Tensor, reg: Regularizer = hinge) -> torch.Tensor:
            out = reg.penalty(context(nn.Module(), logits=z))
            assert out is not None
            return out

        assert torch.autograd.gradcheck(fn, (torch.randn(3, 4, dtype=D, requires_grad=True),))


def test_confidence_penalty_bounds_and_hinge() -> None:
    logits = torch.randn(6, 5, dtype=D) * 3
    h = entropy(logits)
    assert torch.all(h >= 0) and torch.all(h <= math.log(5) + 1e-12)
    close(entropy(torch.zeros(1, 5, dtype=D))[0], math.log(5))
    ctx = context(nn.Module(), logits=logits)
    plain = build("confidence_penalty", strength=0.5).penalty(ctx)
    big = math.log(5) + 1
    hinge = build("confidence_penalty", strength=0.5, threshold=big).penalty(ctx)
    assert plain is not None and hinge is not None
    close(hinge, float(plain) + 0.5 * big)
    close(build("confidence_penalty", threshold=0.0).penalty(ctx), 0.0)


def test_z_loss_is_logsumexp_squared_times_its_weight() -> None:
    reg = build("z_loss", strength=1e-4)
    close(reg.penalty(context(nn.Module(), logits=torch.zeros(1, 2, dtype=D))), 4.80453e-5)
    logits = torch.randn(7, 4, dtype=D) * 5
    reg = build("z_loss", strength=0.3)
    expected = 0.3 * float(torch.logsumexp(logits, -1).pow(2).mean())
    close(reg.penalty(context(nn.Module(), logits=logits)), expected)


# ---------------------------------------------------------------- activation_kurtosis ----------


def test_kurtosis_worked_examples_and_identities() -> None:
    close(kurtosis(torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=D)), 1.0)
    close(kurtosis(torch.tensor([0.0, 0.0, 0.0, 4.0], dtype=D)), 21 / 9)
    x = torch.randn(3, 50, dtype=D)
    torch.testing.assert_close(kurtosis(-2.5 * x + 7), kurtosis(x))
    uniform = torch.linspace(-1, 1, 200001, dtype=D)
    assert float(kurtosis(uniform)) == pytest.approx(1.8, rel=1e-4)
    rows = torch.randn(4, 9, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: kurtosis(t, 1e-6).mean(), (rows,))


def test_activation_kurtosis_hooks_capture_hidden_outputs() -> None:
    model = mlp(0)
    outputs: list[torch.Tensor] = []
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    handles = [m.register_forward_hook(lambda m, i, o: outputs.append(o)) for m in linears]
    reg = build("activation_kurtosis", strength=0.5)
    reg.configure_model(model)
    logits = model(BATCH_X)
    value = reg.penalty(context(model, BATCH_X, logits=logits))
    expected = 0.5 * torch.stack([kurtosis(o, 1e-6).mean() for o in outputs[:-1]]).mean()
    torch.testing.assert_close(value, expected)
    for h in handles:
        h.remove()

    target = build("activation_kurtosis", strength=1.0, form="target", layers="all")
    target.configure_model(model)
    outputs.clear()
    handles = [m.register_forward_hook(lambda m, i, o: outputs.append(o)) for m in linears]
    logits = model(BATCH_X)
    value = target.penalty(context(model, BATCH_X, logits=logits))
    expected = torch.stack([(kurtosis(o, 1e-6) - 1.8).pow(2).mean() for o in outputs]).mean()
    torch.testing.assert_close(value, expected)


def test_activation_kurtosis_ignores_evaluation_passes_and_copies() -> None:
    model = mlp(0)
    reg = build("activation_kurtosis")
    reg.configure_model(model)
    averaged = copy.deepcopy(model).eval()  # what EMA keeps: it shares the hook, not the object
    with torch.no_grad():
        model(BATCH_X)
    averaged(BATCH_X)
    model.eval()
    model(BATCH_X)
    assert reg.penalty(context(model)) is None
    model.train()
    model(BATCH_X)
    assert reg.penalty(context(model)) is not None
    assert reg.penalty(context(model)) is None  # consumed: nothing kept between steps


def test_activation_kurtosis_conv_outputs_use_channels() -> None:
    torch.manual_seed(8)
    conv = nn.Sequential(nn.Conv2d(2, 6, 3), nn.Conv2d(6, 4, 1)).to(D)
    reg = build("activation_kurtosis", strength=1.0)
    reg.configure_model(conv)
    x = torch.randn(2, 2, 5, 5, dtype=D)
    hidden = conv[0](x)
    conv(x)
    value = reg.penalty(context(conv, x))
    expected = kurtosis(hidden.movedim(1, -1).reshape(-1, 6), 1e-6).mean()
    torch.testing.assert_close(value, expected)


# ---------------------------------------------------------------- the training loop ------------

MINE = [
    "l2_init",
    "wasserstein_init",
    "spectral",
    "orthogonality",
    "norm_loss",
    "group_sparsity",
    "lobster",
    "grad_norm_penalty",
    "confidence_penalty",
    "activation_kurtosis",
]
NOT_A_PENALTY = {"lobster"}


def job(regularizers: list[dict[str, Any]], norm: str = "none") -> dict[str, Any]:
    return {
        "data": {"name": "digits", "batch_size": 64},
        "model": {"name": "mlp", "hidden": [32], "norm": norm},
        "optimizer": {"name": "adamw", "lr": 3e-3},
        "regularizers": regularizers,
        "train": {"steps": 40, "log_every": 10, "eval_every": 40, "device": "cpu"},
    }


@pytest.mark.parametrize("name", MINE)
def test_trains_the_minimal_job(name: str) -> None:
    norm = "layernorm" if name in {"spectral", "lobster"} else "none"
    result = train(parse_spec(job([{"name": name}], norm)))
    assert result.status == "completed"
    assert math.isfinite(result.final_metrics["loss"])
    if name not in NOT_A_PENALTY:
        assert math.isfinite(result.final_metrics[f"reg/{name}"])


def test_k_level_and_proximal_variants_train() -> None:
    regs = [
        {"name": "group_sparsity", "kind": "k_level"},
        {"name": "group_sparsity", "proximal": True, "groups": "inputs"},
        {"name": "orthogonality", "variant": "dso"},
    ]
    result = train(parse_spec(job(regs, "batchnorm")))
    assert result.status == "completed"
    assert {"reg/group_sparsity", "reg/group_sparsity#2", "reg/orthogonality"} <= set(
        result.final_metrics
    )


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("l2_init", "strength", -1.0),
        ("wasserstein_init", "reduction", "max"),
        ("spectral", "exponent", 0),
        ("spectral", "power_iterations", 0),
        ("orthogonality", "variant", "qr"),
        ("norm_loss", "form", "cubic"),
        ("group_sparsity", "keep_fraction", 0.0),
        ("group_sparsity", "kind", "lasso"),
        ("lobster", "strength", 1.0),
        ("grad_norm_penalty", "strength", -0.1),
        ("confidence_penalty", "threshold", -1.0),
        ("activation_kurtosis", "eps", 0.0),
        ("activation_kurtosis", "form", "skew"),
    ],
)
def test_bad_settings_name_the_field(name: str, field: str, value: Any) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(job([{"name": name, field: value}]))
    assert [e["path"] for e in info.value.errors] == [f"regularizers[0].{field}"]


@pytest.mark.parametrize(
    "settings",
    [
        {"kind": "k_level", "proximal": True},
        {"kind": "group_lasso", "keep_fraction": 0.3},
    ],
)
def test_group_sparsity_rejects_options_of_the_other_kind(settings: dict[str, Any]) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(job([{"name": "group_sparsity", **settings}]))
    assert info.value.errors[0]["path"].startswith("regularizers[0]")
    assert "only" in info.value.errors[0]["message"]
