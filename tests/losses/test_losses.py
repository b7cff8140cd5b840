"""Every loss against its formula (worked examples, a loop-by-loop reference), its gradient
(gradcheck, float64), the identities its paper lists, soft targets, numerics and spec errors."""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F

from tests.losses import reference as ref
from trainlib.components.loss_imbalance import class_weights
from trainlib.components.losses import log_stablemax
from trainlib.registries import LOSSES
from trainlib.spec import SpecError, parse_spec

D = torch.float64
C = 5
PRIORS = [0.4, 0.3, 0.15, 0.1, 0.05]
COUNTS = [400.0, 300.0, 150.0, 100.0, 50.0]
MINIMAL: dict[str, Any] = {
    "data": {"name": "digits", "batch_size": 64},
    "model": {"name": "mlp", "hidden": [32]},
    "optimizer": {"name": "adamw", "lr": 3e-3},
    "train": {"steps": 40, "log_every": 10, "eval_every": 40, "device": "cpu"},
}


def build(cfg: dict[str, Any]) -> torch.nn.Module:
    return LOSSES.build(cfg)


def value(cfg: dict[str, Any], z: list[list[float]], y: list[int]) -> float:
    return float(build(cfg)(torch.tensor(z, dtype=D), torch.tensor(y)))


def batch(seed: int = 0, n: int = 8, scale: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, C, generator=g, dtype=D) * scale, torch.randint(0, C, (n,), generator=g)


def soft_batch(seed: int = 0, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, C, generator=g, dtype=D) * 2
    targets = torch.distributions.Dirichlet(torch.ones(C, dtype=D)).sample((n,))
    return logits, targets


def logit(p: float) -> float:
    return math.log(p / (1 - p))


# (id, settings, the reference's per-sample hard-label loss)
CASES: list[tuple[str, dict[str, Any], ref.HardLoss]] = [
    ("cross_entropy", {"name": "cross_entropy"}, ref.ce),
    ("bce", {"name": "bce"}, ref.bce),
    ("focal", {"name": "focal"}, ref.focal_softmax(2.0)),
    ("focal_alpha", {"name": "focal", "gamma": 1.5, "alpha": 0.25}, ref.focal_softmax(1.5, 0.25)),
    ("focal_gamma_below_one", {"name": "focal", "gamma": 0.5}, ref.focal_softmax(0.5)),
    ("focal_sigmoid", {"name": "focal", "form": "sigmoid"}, ref.focal_sigmoid(2.0)),
    (
        "focal_sigmoid_alpha",
        {"name": "focal", "form": "sigmoid", "alpha": 0.25, "gamma": 0.5},
        ref.focal_sigmoid(0.5, 0.25),
    ),
    ("poly1", {"name": "poly1"}, ref.poly1(1.0)),
    ("poly1_negative", {"name": "poly1", "epsilon": -0.7}, ref.poly1(-0.7)),
    ("poly1_focal", {"name": "poly1_focal"}, ref.focal_softmax(2.0, 1.0, 1.0)),
    (
        "poly1_focal_sigmoid",
        {"name": "poly1_focal", "form": "sigmoid", "alpha": 0.25, "epsilon": 2.0},
        ref.focal_sigmoid(2.0, 0.25, 2.0),
    ),
    ("asymmetric", {"name": "asymmetric"}, ref.asymmetric(0.0, 4.0, 0.05)),
    (
        "asymmetric_all",
        {"name": "asymmetric", "gamma_pos": 1.0, "gamma_neg": 2.5, "clip": 0.2},
        ref.asymmetric(1.0, 2.5, 0.2),
    ),
    (
        "asymmetric_gammas_below_one",
        {"name": "asymmetric", "gamma_pos": 0.5, "gamma_neg": 0.5, "clip": 0.0},
        ref.asymmetric(0.5, 0.5, 0.0),
    ),
    ("squentropy", {"name": "squentropy"}, ref.squentropy),
    ("stablemax", {"name": "stablemax"}, ref.stablemax),
    ("stablemax_native", {"name": "stablemax", "float64": False}, ref.stablemax),
    (
        "logit_adjusted",
        {"name": "logit_adjusted", "class_priors": PRIORS},
        ref.logit_adjusted(1.0, PRIORS),
    ),
    (
        "logit_adjusted_counts",
        {"name": "logit_adjusted", "tau": 0.5, "class_priors": COUNTS},
        ref.logit_adjusted(0.5, PRIORS),
    ),
    ("vs_loss", {"name": "vs_loss", "class_counts": COUNTS}, ref.vs_loss(0.3, 1.0, COUNTS)),
    (
        "class_weighted",
        {"name": "class_weighted", "class_counts": COUNTS, "beta": 0.99},
        ref.weighted_ce(ref.effective_number_weights(COUNTS, 0.99)),
    ),
    (
        "class_weighted_default_beta",
        {"name": "class_weighted", "class_counts": COUNTS},
        ref.weighted_ce(ref.effective_number_weights(COUNTS, 0.9999)),
    ),
    (
        "class_weighted_inverse",
        {"name": "class_weighted", "class_counts": COUNTS, "scheme": "inverse_frequency"},
        ref.weighted_ce(ref.inverse_frequency_weights(COUNTS)),
    ),
    ("gce", {"name": "gce"}, ref.gce(0.7)),
    (
        "gce_truncated",
        {"name": "gce", "q": 0.5, "k": 0.3, "truncate_after": 0},
        ref.gce(0.5, 0.3),
    ),
    ("mae", {"name": "mae"}, ref.mae),
    ("mse", {"name": "mse"}, ref.mse),
    ("huber", {"name": "huber"}, ref.huber(1.0)),
    ("huber_small_delta", {"name": "huber", "delta": 0.3}, ref.huber(0.3)),
]
CASE_IDS = [c[0] for c in CASES]


# --- (a) worked examples of formulas-regularizers.md §7 ---------------------------------------


def test_focal_worked_example() -> None:
    # p_t = 0.9, γ = 2, α = 0.25 → 0.25 · 0.01 · 0.1053605
    z = [[math.log(0.9), math.log(0.1)]]
    expected = 2.634013e-4
    assert value({"name": "focal", "alpha": 0.25}, z, [0]) == pytest.approx(expected, rel=1e-6)
    sigmoid = {"name": "focal", "alpha": 0.25, "form": "sigmoid"}
    assert value(sigmoid, [[logit(0.9)]], [0]) == pytest.approx(expected, rel=1e-6)


def test_poly1_worked_example() -> None:
    z = [[math.log(0.9), math.log(0.1)]]
    assert value({"name": "poly1"}, z, [0]) == pytest.approx(0.2053605, rel=1e-6)


def test_poly1_focal_worked_example() -> None:
    # p_t = 0.9, α = 0.25, γ = 2, ε = 1 → 2.634013e-4 + 1e-3; α only on the focal part
    cfg = {"name": "poly1_focal", "alpha": 0.25, "form": "sigmoid"}
    assert value(cfg, [[logit(0.9)]], [0]) == pytest.approx(1.2634013e-3, rel=1e-6)
    softmax = {"name": "poly1_focal", "alpha": 0.25}
    z = [[math.log(0.9), math.log(0.1)]]
    assert value(softmax, z, [0]) == pytest.approx(1.2634013e-3, rel=1e-6)


def test_asymmetric_worked_examples() -> None:
    # a positive with p = 0.8 (γ+ = 0) and a negative with p = 0.3 (m = 0.05, γ− = 4)
    z = [[logit(0.8), logit(0.3)]]
    positive, negative = 0.2231436, 1.123758e-3
    assert value({"name": "asymmetric"}, z, [0]) == pytest.approx(positive + negative, rel=1e-6)
    assert -(0.25**4) * math.log(0.75) == pytest.approx(negative, rel=1e-6)


def test_squentropy_worked_example() -> None:
    assert value({"name": "squentropy"}, [[2.0, 1.0, -1.0]], [0]) == pytest.approx(
        1.3490122, rel=1e-6
    )


def test_stablemax_worked_example() -> None:
    z = torch.tensor([[1.0, -1.0, 0.0]], dtype=D)
    probs = log_stablemax(z).exp()
    torch.testing.assert_close(
        probs, torch.tensor([[4 / 7, 1 / 7, 2 / 7]], dtype=D), rtol=1e-12, atol=0
    )
    assert value({"name": "stablemax"}, z.tolist(), [0]) == pytest.approx(0.5596158, rel=1e-6)


def test_logit_adjusted_worked_example() -> None:
    cfg = {"name": "logit_adjusted", "class_priors": [0.9, 0.1]}
    assert value(cfg, [[0.0, 0.0]], [1]) == pytest.approx(2.302585, rel=1e-6)


def test_vs_loss_worked_example() -> None:
    cfg = {"name": "vs_loss", "class_counts": [100, 10]}
    assert value(cfg, [[1.0, 1.0]], [1]) == pytest.approx(2.860351, rel=1e-6)


def test_class_weighted_worked_example() -> None:
    # raw (1 − β)/(1 − β^n) = [0.015774, 0.104583], normalised to sum to C = 2 (6 decimals given)
    w = class_weights(torch.tensor([100.0, 10.0], dtype=D), "effective_number", 0.99)
    torch.testing.assert_close(w, torch.tensor([0.262116, 1.737884], dtype=D), rtol=0, atol=5e-7)
    raw = torch.tensor([0.01 / (1 - 0.99**100), 0.01 / (1 - 0.99**10)], dtype=D)
    torch.testing.assert_close(raw, torch.tensor([0.015774, 0.104583], dtype=D), rtol=0, atol=5e-7)


def test_gce_and_mae_worked_examples() -> None:
    # p_y = 0.5
    assert value({"name": "gce"}, [[0.0, 0.0]], [1]) == pytest.approx(0.5491826, rel=1e-6)
    assert value({"name": "mae"}, [[0.0, 0.0]], [1]) == pytest.approx(1.0, rel=1e-12)


def test_mse_and_huber_by_hand() -> None:
    # z = [2, −0.5], y = 0: residuals [1, −0.5]
    z = [[2.0, -0.5]]
    assert value({"name": "mse"}, z, [0]) == pytest.approx((1 + 0.25) / 2, rel=1e-12)
    assert value({"name": "huber"}, z, [0]) == pytest.approx((0.5 + 0.125) / 2, rel=1e-12)
    # δ = 0.4: both residuals are beyond δ, linear: δ(|r| − δ/2)
    huber = {"name": "huber", "delta": 0.4}
    assert value(huber, z, [0]) == pytest.approx((0.4 * 0.8 + 0.4 * 0.3) / 2, rel=1e-12)


# --- (a) every loss against the loop-by-loop reference ----------------------------------------


@pytest.mark.parametrize(("name", "cfg", "hard"), CASES, ids=CASE_IDS)
def test_matches_reference_on_class_indices(name: str, cfg: dict[str, Any], hard: Any) -> None:
    logits, y = batch(seed=1)
    got = build(cfg)(logits, y)
    want = ref.batch_hard(hard, logits.tolist(), y.tolist())
    assert got.dtype == D
    assert got.shape == ()
    assert float(got) == pytest.approx(want, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("name", "cfg", "hard"), CASES, ids=CASE_IDS)
def test_soft_targets_give_the_expected_loss(name: str, cfg: dict[str, Any], hard: Any) -> None:
    logits, targets = soft_batch(seed=2)
    got = build(cfg)(logits, targets)
    want = ref.batch_soft(hard, logits.tolist(), targets.tolist())
    assert float(got) == pytest.approx(want, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("name", "cfg", "hard"), CASES, ids=CASE_IDS)
def test_one_hot_soft_targets_equal_class_indices(
    name: str, cfg: dict[str, Any], hard: Any
) -> None:
    logits, y = batch(seed=3)
    loss = build(cfg)
    torch.testing.assert_close(
        loss(logits, F.one_hot(y, C).to(D)), loss(logits, y), rtol=1e-12, atol=1e-14
    )


@pytest.mark.parametrize(("name", "cfg", "hard"), CASES, ids=CASE_IDS)
def test_mixup_identity(name: str, cfg: dict[str, Any], hard: Any) -> None:
    """loss(z, λ y_a + (1 − λ) y_b) = λ loss(z, y_a) + (1 − λ) loss(z, y_b) (mixup's loss)."""
    logits, y_a = batch(seed=4)
    y_b = y_a.roll(1)
    lam = 0.3
    loss = build(cfg)
    mixed = lam * F.one_hot(y_a, C).to(D) + (1 - lam) * F.one_hot(y_b, C).to(D)
    torch.testing.assert_close(
        loss(logits, mixed),
        lam * loss(logits, y_a) + (1 - lam) * loss(logits, y_b),
        rtol=1e-12,
        atol=1e-14,
    )


# --- (b) gradients -----------------------------------------------------------------------------


def _gradcheck_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    # ASL's reference treats the focusing weight as a constant: not the function's gradient
    return {**cfg, "detach_focal_weight": False} if cfg["name"] == "asymmetric" else cfg


@pytest.mark.parametrize(("name", "cfg", "hard"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("soft", [False, True], ids=["indices", "soft"])
def test_gradcheck(name: str, cfg: dict[str, Any], hard: Any, soft: bool) -> None:
    logits, y = batch(seed=5, n=4, scale=1.5)
    target = torch.distributions.Dirichlet(torch.ones(C, dtype=D)).sample((4,)) if soft else y
    loss = build(_gradcheck_cfg(cfg))
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: loss(z, target), (logits,), eps=1e-6, atol=1e-7)


def test_asymmetric_detached_weight_gradient_by_hand() -> None:
    # positive, p = 0.8, γ+ = 2, m = 0: L = −w log p with w = (1 − p)² held constant
    # → dL/dz = −w (1 − p); in the graph it gains −log p · dw/dz = −log p · (−2 (1 − p)² p)
    p = 0.8
    z = torch.tensor([[logit(p)]], dtype=D, requires_grad=True)
    cfg = {"name": "asymmetric", "gamma_pos": 2.0, "clip": 0.0}
    (grad,) = torch.autograd.grad(build(cfg)(z, torch.tensor([0])), z)
    assert float(grad) == pytest.approx(-((1 - p) ** 2) * (1 - p), rel=1e-9)
    (full,) = torch.autograd.grad(
        build({**cfg, "detach_focal_weight": False})(z, torch.tensor([0])), z
    )
    want = -((1 - p) ** 3) + math.log(p) * 2 * (1 - p) ** 2 * p
    assert float(full) == pytest.approx(want, rel=1e-9)


def test_poly1_extra_gradient_on_the_target_logit() -> None:
    # d/dz_y [ε (1 − p_y)] = −ε p_y (1 − p_y)
    logits, y = batch(seed=6, n=1)
    logits.requires_grad_(True)
    eps = 0.7
    (g_poly,) = torch.autograd.grad(build({"name": "poly1", "epsilon": eps})(logits, y), logits)
    (g_ce,) = torch.autograd.grad(F.cross_entropy(logits, y), logits)
    p_y = float(logits.detach().softmax(-1)[0, y[0]])
    assert float((g_poly - g_ce)[0, y[0]]) == pytest.approx(-eps * p_y * (1 - p_y), rel=1e-9)


@pytest.mark.parametrize(("name", "q", "scale"), [("gce", 0.7, 1.0), ("mae", 1.0, 2.0)])
def test_gce_and_mae_gradient_formula(name: str, q: float, scale: float) -> None:
    # ∂L_q/∂z = −p_y^q (e_y − p); MAE = 2 L_{q=1}
    logits, y = batch(seed=7, n=1)
    logits.requires_grad_(True)
    (grad,) = torch.autograd.grad(build({"name": name})(logits, y), logits)
    p = logits.detach().softmax(-1)[0]
    e_y = F.one_hot(y, C)[0].to(D)
    torch.testing.assert_close(grad[0], -scale * p[y[0]] ** q * (e_y - p), rtol=1e-9, atol=1e-12)


# --- (c) identities ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        {"name": "poly1", "epsilon": 0.0},
        {"name": "focal", "gamma": 0.0},
        {"name": "poly1_focal", "gamma": 0.0, "epsilon": 0.0},
        {"name": "logit_adjusted", "tau": 0.0, "class_priors": PRIORS},
        {"name": "logit_adjusted", "class_priors": [1.0] * C},
        {"name": "vs_loss", "gamma": 0.0, "tau": 0.0, "class_counts": COUNTS},
        {"name": "class_weighted", "beta": 0.0, "class_counts": COUNTS},
        {"name": "stablemax"},  # not an identity: checked to differ below
    ],
    ids=lambda cfg: "-".join(f"{k}={v}" for k, v in cfg.items() if k != "class_counts"),
)
@pytest.mark.parametrize("soft", [False, True], ids=["indices", "soft"])
def test_reduces_to_cross_entropy(cfg: dict[str, Any], soft: bool) -> None:
    logits, y = soft_batch(seed=8) if soft else batch(seed=8)
    got, want = build(cfg)(logits, y), F.cross_entropy(logits, y)
    if cfg["name"] == "stablemax":
        assert not torch.allclose(got, want)
    else:
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_poly1_with_zero_epsilon_equals_cross_entropy_with_label_smoothing() -> None:
    logits, y = batch(seed=9)
    got = build({"name": "poly1", "epsilon": 0.0, "label_smoothing": 0.1})(logits, y)
    torch.testing.assert_close(got, F.cross_entropy(logits, y, label_smoothing=0.1))
    # with ε ≠ 0 the extra term uses the smoothed target: ε (1 − Σ_k y^s_k p_k)
    smooth = 0.9 * F.one_hot(y, C).to(D) + 0.1 / C
    p = logits.softmax(-1)
    want = F.cross_entropy(logits, smooth) + 0.5 * (1 - (smooth * p).sum(-1)).mean()
    got = build({"name": "poly1", "epsilon": 0.5, "label_smoothing": 0.1})(logits, y)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("soft", [False, True], ids=["indices", "soft"])
def test_one_vs_rest_losses_reduce_to_bce(soft: bool) -> None:
    logits, y = soft_batch(seed=10) if soft else batch(seed=10)
    dense = y if soft else F.one_hot(y, C).to(D)
    want = F.binary_cross_entropy_with_logits(logits, dense, reduction="sum") / len(logits)
    zero_asl = {"name": "asymmetric", "gamma_pos": 0.0, "gamma_neg": 0.0, "clip": 0.0}
    for cfg in [
        {"name": "bce"},
        zero_asl,
        {**zero_asl, "detach_focal_weight": False},
        {"name": "focal", "gamma": 0.0, "form": "sigmoid"},
        {"name": "poly1_focal", "gamma": 0.0, "epsilon": 0.0, "form": "sigmoid"},
    ]:
        torch.testing.assert_close(build(cfg)(logits, y), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("form", ["softmax", "sigmoid"])
def test_poly1_focal_with_zero_epsilon_is_focal(form: str) -> None:
    logits, y = batch(seed=11)
    focal = {"name": "focal", "gamma": 1.5, "alpha": 0.25, "form": form}
    poly = {**focal, "name": "poly1_focal", "epsilon": 0.0}
    torch.testing.assert_close(build(poly)(logits, y), build(focal)(logits, y), rtol=1e-12, atol=0)


def test_asymmetric_drops_easy_negatives_exactly() -> None:
    # negatives with p ≤ m contribute exactly 0 (value and gradient)
    z = torch.tensor([[logit(0.9), logit(0.04), logit(0.05) - 1e-9]], dtype=D, requires_grad=True)
    cfg = {"name": "asymmetric", "gamma_pos": 0.0, "clip": 0.05, "detach_focal_weight": False}
    loss = build(cfg)(z, torch.tensor([0]))
    assert float(loss.detach()) == pytest.approx(-math.log(0.9), rel=1e-12)
    (grad,) = torch.autograd.grad(loss, z)
    assert grad[0, 1:].abs().max() == 0


def test_squentropy_two_classes() -> None:
    logits, y = torch.tensor([[0.3, -1.7], [2.0, 0.5]], dtype=D), torch.tensor([0, 1])
    other = logits[torch.arange(2), 1 - y]
    want = F.cross_entropy(logits, y) + other.square().mean()
    torch.testing.assert_close(build({"name": "squentropy"})(logits, y), want)


def test_stablemax_identities() -> None:
    def s_of(x: torch.Tensor) -> torch.Tensor:
        # with z = [x, 0]: p_0 / p_1 = s(x) / s(0) = s(x)
        log_p = log_stablemax(torch.stack([x, torch.zeros_like(x)], -1))
        return (log_p[:, 0] - log_p[:, 1]).exp()

    x = torch.linspace(-50, 50, 101, dtype=D)
    torch.testing.assert_close(s_of(x) * s_of(-x), torch.ones_like(x), rtol=1e-12, atol=0)
    want = torch.tensor([ref.s(float(v)) for v in x], dtype=D)
    torch.testing.assert_close(s_of(x), want, rtol=1e-12, atol=0)
    logits, _ = batch(seed=12)
    torch.testing.assert_close(log_stablemax(logits).exp().sum(-1), torch.ones(8, dtype=D))
    # not shift-invariant, unlike softmax
    assert not torch.allclose(log_stablemax(logits), log_stablemax(logits + 3))


def test_stablemax_branches_keep_gradients_finite() -> None:
    # the where-over-both-branches hazard: the unused branch, 1/(1 − x) at x = 1 or x + 1 at
    # x = −1, must not reach the gradient as 0 · inf = NaN
    z = torch.tensor([[1.0, -1.0, 0.0, 3e4, -1e30, 1e30]], requires_grad=True)
    for cfg in [{"name": "stablemax", "float64": False}, {"name": "stablemax"}]:
        loss = build(cfg)(z, torch.tensor([1]))
        assert loss.dtype == torch.float32
        (grad,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_logit_adjusted_is_vs_loss_with_zero_gamma() -> None:
    logits, y = batch(seed=13)
    la = build({"name": "logit_adjusted", "tau": 0.8, "class_priors": COUNTS})
    vs = build({"name": "vs_loss", "gamma": 0.0, "tau": 0.8, "class_counts": COUNTS})
    torch.testing.assert_close(la(logits, y), vs(logits, y), rtol=1e-12, atol=0)


def test_class_weighted_divides_by_the_batch_size_not_the_weight_sum() -> None:
    logits, y = batch(seed=14)
    w = class_weights(torch.tensor(COUNTS, dtype=D), "effective_number", 0.9999)
    got = build({"name": "class_weighted", "class_counts": COUNTS})(logits, y)
    by_batch = (w[y] * F.cross_entropy(logits, y, reduction="none")).sum() / len(y)
    torch.testing.assert_close(got, by_batch)
    assert not torch.allclose(got, F.cross_entropy(logits, y, weight=w))


def test_class_weights_effective_number_limits() -> None:
    counts = torch.tensor(COUNTS, dtype=D)
    assert float(class_weights(counts, "effective_number", 0.0).sum()) == pytest.approx(C)
    torch.testing.assert_close(
        class_weights(counts, "effective_number", 0.0), torch.ones(C, dtype=D)
    )
    # β → 1: proportional to 1/n_c (exact 1 − β^n through expm1, even this close to 1)
    torch.testing.assert_close(
        class_weights(counts, "effective_number", 1 - 1e-12),
        class_weights(counts, "inverse_frequency", 0.0),
        rtol=1e-6,
        atol=0,
    )


def test_gce_limits() -> None:
    logits, y = batch(seed=15)
    ce = F.cross_entropy(logits, y)
    torch.testing.assert_close(build({"name": "gce", "q": 1e-7})(logits, y), ce, rtol=1e-5, atol=0)
    torch.testing.assert_close(
        2 * build({"name": "gce", "q": 1.0})(logits, y), build({"name": "mae"})(logits, y)
    )


def test_truncated_gce_is_constant_below_k() -> None:
    # p_y = 0.2 ≤ k = 0.5: the constant L_q(k) and no gradient; p_y = 0.8: plain L_q
    z = torch.tensor([[math.log(0.8), math.log(0.2)]] * 2, dtype=D, requires_grad=True)
    y = torch.tensor([1, 0])
    loss = build({"name": "gce", "k": 0.5, "truncate_after": 0})(z, y)
    q = 0.7
    assert float(loss.detach()) == pytest.approx(
        ((1 - 0.5**q) / q + (1 - 0.8**q) / q) / 2, rel=1e-12
    )
    (grad,) = torch.autograd.grad(loss, z)
    assert grad[0].abs().max() == 0 and grad[1].abs().max() > 0


def test_truncated_gce_starts_after_truncate_after_training_batches() -> None:
    loss = build({"name": "gce", "k": 0.5, "truncate_after": 2})
    q = 0.7
    z = torch.tensor([[math.log(0.3), math.log(0.7)]], dtype=D, requires_grad=True)  # p_y = 0.3
    plain, truncated = (1 - 0.3**q) / q, (1 - 0.5**q) / q
    seen = []
    for _ in range(4):
        seen.append(float(loss(z, torch.tensor([0])).detach()))
    assert seen == pytest.approx([plain, plain, truncated, truncated], rel=1e-12)
    with torch.no_grad():  # evaluation is not a training batch
        loss(z, torch.tensor([0]))
    assert loss.batches_seen == 4
    fresh = build({"name": "gce", "k": 0.5, "truncate_after": 2})
    fresh.load_state_dict(loss.state_dict())  # the count travels in the state_dict
    assert fresh.batches_seen == 4
    assert float(fresh(z, torch.tensor([0])).detach()) == pytest.approx(truncated, rel=1e-12)


def test_mae_is_symmetric() -> None:
    logits, _ = batch(seed=16)
    mae = build({"name": "mae"})
    total = sum(mae(logits, torch.full((8,), c)) for c in range(C))
    torch.testing.assert_close(total, torch.tensor(2.0 * (C - 1), dtype=D))


def test_mse_and_huber_match_torch_on_one_hot_targets() -> None:
    logits, y = batch(seed=17)
    one_hot = F.one_hot(y, C).to(D)
    torch.testing.assert_close(build({"name": "mse"})(logits, y), F.mse_loss(logits, one_hot))
    torch.testing.assert_close(
        build({"name": "huber", "delta": 0.7})(logits, y),
        F.huber_loss(logits, one_hot, delta=0.7),
    )
    # δ beyond every residual: Huber is half the square loss
    torch.testing.assert_close(
        build({"name": "huber", "delta": 1e3})(logits, y), 0.5 * F.mse_loss(logits, one_hot)
    )


def test_mse_soft_targets_have_the_regression_gradient() -> None:
    logits, targets = soft_batch(seed=18)
    logits.requires_grad_(True)
    (got,) = torch.autograd.grad(build({"name": "mse"})(logits, targets), logits)
    (want,) = torch.autograd.grad(F.mse_loss(logits, targets), logits)
    torch.testing.assert_close(got, want)


def test_cross_entropy_takes_soft_targets_of_another_dtype() -> None:
    logits, targets = soft_batch(seed=19)
    loss = build({"name": "cross_entropy", "label_smoothing": 0.1})
    want = -(((0.9 * targets + 0.1 / C) * logits.log_softmax(-1)).sum(-1)).mean()
    torch.testing.assert_close(loss(logits, targets.float()), want, rtol=1e-6, atol=0)


# --- numerics and input checks -----------------------------------------------------------------


@pytest.mark.parametrize(("name", "cfg", "hard"), CASES, ids=CASE_IDS)
def test_confident_float32_logits_give_finite_values_and_gradients(
    name: str, cfg: dict[str, Any], hard: Any
) -> None:
    # margins of 200: softmax/sigmoid probabilities round to exactly 0 and 1 in float32
    logits = torch.tensor([[200.0, -200.0, 0.0, 10.0, -10.0]] * 5, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 4])
    for c in [cfg, _gradcheck_cfg(cfg)]:
        loss = build(c)(logits, y)
        (grad,) = torch.autograd.grad(loss, logits)
        assert loss.dtype == torch.float32
        assert torch.isfinite(loss), c
        assert torch.isfinite(grad).all(), c


@pytest.mark.parametrize("name", LOSSES.names())
def test_bad_target_shapes_are_rejected(name: str) -> None:
    loss = build({"name": name})
    logits = torch.zeros(4, C)
    with pytest.raises((ValueError, RuntimeError)):
        loss(logits, torch.zeros(4, C + 1))  # soft targets of the wrong width


def test_counts_that_do_not_match_the_classes_are_rejected() -> None:
    loss = build({"name": "vs_loss", "class_counts": [1, 2, 3]})
    with pytest.raises(ValueError, match="3 class counts or priors given, but the model has 5"):
        loss(torch.zeros(2, C), torch.tensor([0, 1]))


# --- catalogue and spec ------------------------------------------------------------------------

EXPECTED_NAMES = {
    "cross_entropy",
    "bce",
    "focal",
    "poly1",
    "poly1_focal",
    "asymmetric",
    "squentropy",
    "stablemax",
    "logit_adjusted",
    "vs_loss",
    "class_weighted",
    "gce",
    "mae",
    "mse",
    "huber",
}


def test_every_loss_is_registered_with_a_paper() -> None:
    assert set(LOSSES.names()) >= EXPECTED_NAMES
    for entry in LOSSES.entries():
        assert entry.summary
        assert entry.paper or entry.name == "bce"  # textbook binary cross-entropy
        assert entry.settings.__doc__
        assert isinstance(entry.settings.soft_targets, bool)


@pytest.mark.parametrize(
    ("name", "defaults"),
    [
        ("focal", {"gamma": 2.0, "alpha": None, "form": "softmax"}),
        ("poly1", {"epsilon": 1.0, "label_smoothing": 0.0}),
        ("poly1_focal", {"gamma": 2.0, "epsilon": 1.0}),
        ("asymmetric", {"gamma_pos": 0.0, "gamma_neg": 4.0, "clip": 0.05}),
        ("stablemax", {"float64": True}),
        ("logit_adjusted", {"tau": 1.0, "class_priors": None}),
        ("vs_loss", {"gamma": 0.3, "tau": 1.0, "class_counts": None}),
        ("class_weighted", {"scheme": "effective_number", "beta": 0.9999}),
        ("gce", {"q": 0.7, "k": None}),
        ("huber", {"delta": 1.0}),
    ],
)
def test_spec_resolves_the_papers_defaults(name: str, defaults: dict[str, Any]) -> None:
    resolved = parse_spec({**MINIMAL, "loss": {"name": name}}).model_dump(mode="json")["loss"]
    assert {k: resolved[k] for k in defaults} == defaults


@pytest.mark.parametrize(
    ("loss", "path"),
    [
        ({"name": "focal", "gamma": -1}, "loss.gamma"),
        ({"name": "focal", "alpha": 1.5}, "loss.alpha"),
        ({"name": "focal", "form": "tanh"}, "loss.form"),
        ({"name": "poly1", "epsilon": -2}, "loss.epsilon"),
        ({"name": "poly1", "label_smoothing": 1}, "loss.label_smoothing"),
        ({"name": "poly1_focal", "epsilon": -1.5}, "loss.epsilon"),
        ({"name": "asymmetric", "clip": 1.0}, "loss.clip"),
        ({"name": "asymmetric", "gamma_neg": -1}, "loss.gamma_neg"),
        ({"name": "asymmetric", "gamma_pos": -0.5}, "loss.gamma_pos"),
        ({"name": "stablemax", "float64": "sometimes"}, "loss.float64"),
        ({"name": "logit_adjusted", "tau": -1}, "loss.tau"),
        ({"name": "logit_adjusted", "class_priors": [0.5, 0.0]}, "loss.class_priors[1]"),
        ({"name": "logit_adjusted", "class_priors": [1.0]}, "loss.class_priors"),
        ({"name": "vs_loss", "gamma": -0.1}, "loss.gamma"),
        ({"name": "vs_loss", "class_counts": [10, -3, 4]}, "loss.class_counts[1]"),
        ({"name": "class_weighted", "beta": 1.0}, "loss.beta"),
        ({"name": "class_weighted", "scheme": "sqrt"}, "loss.scheme"),
        ({"name": "gce", "q": 0}, "loss.q"),
        ({"name": "gce", "q": 1.5}, "loss.q"),
        ({"name": "gce", "k": 1.0, "truncate_after": 5}, "loss.k"),
        ({"name": "gce", "k": 0.5}, "loss.truncate_after"),
        ({"name": "gce", "truncate_after": 10}, "loss.truncate_after"),
        ({"name": "gce", "k": 0.5, "truncate_after": -1}, "loss.truncate_after"),
        ({"name": "huber", "delta": 0}, "loss.delta"),
        ({"name": "bce", "pos_weight": 2}, "loss.pos_weight"),
        ({"name": "mae", "q": 1}, "loss.q"),
        ({"name": "squentropy", "epsilon": 1}, "loss.epsilon"),
    ],
)
def test_bad_settings_name_their_path(loss: dict[str, Any], path: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({**copy.deepcopy(MINIMAL), "loss": loss})
    assert [e["path"] for e in info.value.errors] == [path]


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_takes_mixup_soft_targets(name: str) -> None:
    assert getattr(LOSSES.get(name).settings, "soft_targets", True)
    parse_spec({**MINIMAL, "loss": {"name": name}, "regularizers": [{"name": "mixup"}]})


def test_mixup_with_a_hard_label_loss_is_rejected() -> None:
    # No registered loss is hard-label only; a settings subclass that says so stands in for one.
    ce = LOSSES.get("cross_entropy").settings

    class HardLabelsOnly(ce):  # type: ignore[misc,valid-type]
        soft_targets: ClassVar[bool] = False

    loss = HardLabelsOnly(name="cross_entropy")
    raw = {**MINIMAL, "loss": loss, "regularizers": [{"name": "mixup"}]}
    with pytest.raises(SpecError, match="soft targets"):
        parse_spec(raw)
    parse_spec({**raw, "regularizers": [{"name": "l2"}]})  # the same loss without mixup is fine
