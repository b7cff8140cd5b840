"""Reparametrizations: spectral_norm, weight_norm, weight_standardization (+ scaled),
sigma_reparam, weight_compander, lawn. Worked examples of formulas-regularizers.md §2, identities,
gradients, bit-identical resumes, training through trainlib.train, and settings errors.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.regularizers.helpers import (
    assert_bad_setting,
    assert_resumes_bit_identically,
    minimal_job,
    sequential_batches,
    train_minimal_job,
)
from trainlib import SpecError, parse_spec
from trainlib.data import DataInfo
from trainlib.registries import REGULARIZERS
from trainlib.regularizers import Regularizer, RegularizerStack, SetupContext
from trainlib.regularizers.reparam import (
    CompanderWeight,
    FixedNorm,
    SigmaReparamWeight,
    Standardize,
)
from trainlib.step import train_step

CPU = torch.device("cpu")


def setup(total_steps: int = 100) -> SetupContext:
    return SetupContext(
        info=DataInfo((12,), 4),
        total_steps=total_steps,
        steps_per_epoch=10,
        batch_size=8,
        train_size=80,
        seed=0,
    )


def build(raw: dict[str, Any], total_steps: int = 100) -> Regularizer:
    stack = RegularizerStack.build([REGULARIZERS.settings_for(raw)], setup(total_steps))
    return stack.items[0]


def reparametrize(raw: dict[str, Any], *layers: nn.Module) -> nn.Sequential:
    model = nn.Sequential(*layers)
    build(raw).configure_model(model)
    return model


def linear(weight: list[list[float]], bias: bool = False) -> nn.Linear:
    w = torch.tensor(weight, dtype=torch.float64)
    layer = nn.Linear(w.shape[1], w.shape[0], bias=bias).double()
    with torch.no_grad():
        layer.weight.copy_(w)
    return layer


def top_singular(w: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(w.detach().flatten(1), ord=2))


# --- spectral_norm --------------------------------------------------------------------------------


def test_spectral_norm_worked_example_diag() -> None:
    layer = linear([[3.0, 0.0], [0.0, 1.0]])
    reparametrize({"name": "spectral_norm"}, layer)
    for _ in range(60):  # each access in training mode runs one power-iteration step
        w = layer.weight
    expected = torch.tensor([[1.0, 0.0], [0.0, 1 / 3]], dtype=torch.float64)
    torch.testing.assert_close(w, expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize(
    "layer",
    [nn.Linear(20, 10), nn.Conv2d(3, 6, 3), nn.ConvTranspose2d(4, 5, 3)],
    ids=["linear", "conv", "conv_transpose"],
)
def test_spectral_norm_top_singular_value_is_one(layer: nn.Module) -> None:
    torch.manual_seed(0)
    layer = layer.double()
    with torch.no_grad():
        layer.weight.mul_(7.0)  # far from 1 to begin with
    reparametrize({"name": "spectral_norm"}, layer)
    for _ in range(300):
        w = layer.weight
    out_dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
    assert abs(top_singular(w.movedim(out_dim, 0)) - 1) < 1e-3


def test_spectral_norm_scale_invariance_and_eval_mode() -> None:
    torch.manual_seed(1)
    w0 = torch.randn(6, 5, dtype=torch.float64)
    a, b = linear(w0.tolist()), linear((4.0 * w0).tolist())
    torch.manual_seed(2)
    reparametrize({"name": "spectral_norm"}, a)
    torch.manual_seed(2)  # the same random start for u and v
    reparametrize({"name": "spectral_norm"}, b)
    for _ in range(5):
        wa, wb = a.weight, b.weight
    torch.testing.assert_close(wa, wb, rtol=1e-6, atol=1e-12)

    a.eval()  # eval mode: no iteration, the stored u and v are reused
    u = a.parametrizations.weight[0]._u.clone()
    _ = a.weight
    assert torch.equal(u, a.parametrizations.weight[0]._u)


def test_spectral_norm_gradient_flows_through_sigma() -> None:
    layer = linear([[3.0, 1.0], [0.5, 2.0]])
    reparametrize({"name": "spectral_norm"}, layer)
    layer.eval()  # fixed u, v: W_SN(W) = W / (uᵀWv) is then a smooth function of W
    sn = layer.parametrizations.weight[0]
    original = layer.parametrizations.weight.original.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(sn, (original,))


# --- weight_norm ----------------------------------------------------------------------------------


def test_weight_norm_worked_example_and_identities() -> None:
    layer = linear([[1.0, 2.0], [-2.0, 0.5], [0.3, 0.3]])
    before = layer.weight.detach().clone()
    reparametrize({"name": "weight_norm"}, layer)
    # g starts at ‖v‖: the layer's function is unchanged
    torch.testing.assert_close(layer.weight, before, rtol=1e-12, atol=1e-12)

    params = layer.parametrizations.weight
    with torch.no_grad():
        params.original0.copy_(torch.tensor([[10.0], [2.0], [-3.0]]))
        params.original1[0] = torch.tensor([3.0, 4.0])
    torch.testing.assert_close(layer.weight[0], torch.tensor([6.0, 8.0], dtype=torch.float64))
    # ‖w_i‖ = |g_i|, and ∂L/∂v ⟂ v row by row
    torch.testing.assert_close(
        layer.weight.norm(dim=1), params.original0.detach().abs().flatten(), rtol=1e-12, atol=0
    )
    (layer.weight * torch.randn(3, 2, dtype=torch.float64)).sum().backward()
    radial = (params.original1.grad * params.original1.detach()).sum(1)
    torch.testing.assert_close(radial, torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)


def test_weight_norm_whole_tensor_option() -> None:
    layer = linear([[3.0, 0.0], [0.0, 4.0]])
    reparametrize({"name": "weight_norm", "per_output": False}, layer)
    assert layer.parametrizations.weight.original0.numel() == 1  # one g for the tensor
    torch.testing.assert_close(float(layer.weight.detach().norm()), 5.0)


# --- weight_standardization -----------------------------------------------------------------------


def test_weight_standardization_worked_examples() -> None:
    plain = linear([[1.0, 2.0, 3.0]])
    reparametrize({"name": "weight_standardization"}, plain)
    expected = torch.tensor([[-1.0, 0.0, 1.0]], dtype=torch.float64) / (1 + 1e-5)
    torch.testing.assert_close(plain.weight, expected, rtol=1e-6, atol=0)

    scaled = linear([[1.0, 2.0, 3.0]])
    reparametrize({"name": "weight_standardization", "scaled": True}, scaled)
    r = 1 / math.sqrt(2)  # N·Var = 3 · 2/3 = 2
    torch.testing.assert_close(
        scaled.weight, torch.tensor([[-r, 0.0, r]], dtype=torch.float64), rtol=1e-6, atol=0
    )


@pytest.mark.parametrize(
    "layer",
    [nn.Linear(50, 8), nn.Conv2d(3, 6, 3), nn.ConvTranspose2d(4, 5, 3)],
    ids=["linear", "conv", "conv_transpose"],
)
def test_weight_standardization_zero_mean_unit_variance_per_output(layer: nn.Module) -> None:
    torch.manual_seed(0)
    layer = layer.double()
    out_dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
    raw = layer.weight.detach().movedim(out_dim, 0).flatten(1)
    reparametrize({"name": "weight_standardization"}, layer)
    rows = layer.weight.detach().movedim(out_dim, 0).flatten(1)
    torch.testing.assert_close(rows.mean(1), torch.zeros(len(rows), dtype=torch.float64))
    # unbiased std is std/(std + ε): 1 up to ε relative to the raw rows' std
    std = raw.std(1)
    torch.testing.assert_close(rows.std(1), std / (std + 1e-5), rtol=1e-9, atol=0)
    assert (rows.std(1) - 1).abs().max() < 1e-3


def test_scaled_weight_standardization_unit_norm_rows_and_gain() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 3).double()
    reparametrize({"name": "weight_standardization", "scaled": True}, conv)
    rows = conv.weight.detach().flatten(1)
    torch.testing.assert_close(rows.mean(1), torch.zeros(6, dtype=torch.float64))
    torch.testing.assert_close(rows.pow(2).sum(1), torch.ones(6, dtype=torch.float64))
    gain = conv.parametrizations.weight[0].gain
    assert gain.requires_grad and gain.shape == (6,)
    with torch.no_grad():
        gain.fill_(2.0)
    torch.testing.assert_close(
        conv.weight.detach().flatten(1).pow(2).sum(1), 4 * torch.ones(6).double()
    )
    # a constant row is clamped by ε and comes out as zeros
    flat = linear([[2.0, 2.0, 2.0]])
    reparametrize({"name": "weight_standardization", "scaled": True}, flat)
    assert torch.equal(flat.weight.detach(), torch.zeros(1, 3, dtype=torch.float64))


def test_weight_standardization_invariant_to_affine_row_maps() -> None:
    torch.manual_seed(3)
    w = torch.randn(4, 9, dtype=torch.float64)
    a = torch.tensor([[0.5], [2.0], [3.0], [7.0]], dtype=torch.float64)
    b = torch.randn(4, 1, dtype=torch.float64)
    for scaled, rtol in ((True, 1e-9), (False, 1e-3)):  # plain WS's ε breaks exactness slightly
        std = Standardize(0, 4, scaled, 1e-4 if scaled else 1e-5).double()
        torch.testing.assert_close(std(a * w + b), std(w), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("scaled", [False, True])
def test_weight_standardization_gradcheck(scaled: bool) -> None:
    torch.manual_seed(0)
    std = Standardize(0, 3, scaled, 1e-4 if scaled else 1e-5).double()
    w = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(std, (w,))
    if scaled:
        assert std.gain is not None
        gain = std.gain.detach().clone().requires_grad_(True)
        check = Standardize(0, 3, True, 1e-4).double()
        assert torch.autograd.gradcheck(
            lambda g: torch.func.functional_call(check, {"gain": g}, (w,)), (gain,)
        )


def test_weight_standardization_rejects_fan_in_one() -> None:
    with pytest.raises(ValueError, match="fan-in of 1"):
        reparametrize({"name": "weight_standardization"}, nn.Linear(1, 3))


# --- sigma_reparam --------------------------------------------------------------------------------


def test_sigma_reparam_starts_as_the_identity_and_tracks_gamma() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(7, 5).double()
    w0 = layer.weight.detach().clone()
    reparametrize({"name": "sigma_reparam"}, layer)
    param = layer.parametrizations.weight[0]
    # γ = σ(W₀), u the exact top right-singular vector: Ŵ₀ = W₀
    torch.testing.assert_close(float(param.gamma.detach()), top_singular(w0), rtol=1e-9, atol=0)
    torch.testing.assert_close(layer.weight, w0, rtol=1e-9, atol=1e-12)
    assert param.gamma.requires_grad and param.gamma.ndim == 0

    with torch.no_grad():
        param.gamma.fill_(0.5)
        layer.parametrizations.weight.original.add_(0.3 * torch.randn(5, 7, dtype=torch.float64))
    for _ in range(100):
        w = layer.weight
    torch.testing.assert_close(top_singular(w), 0.5, rtol=1e-6, atol=0)  # σ(Ŵ) = |γ|
    torch.testing.assert_close(
        float(param.sigma), top_singular(layer.parametrizations.weight.original)
    )


def test_sigma_reparam_gamma_one_and_eval_mode() -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 4, 3).double()
    reparametrize({"name": "sigma_reparam", "gamma_init": "one"}, conv)
    param = conv.parametrizations.weight[0]
    assert float(param.gamma.detach()) == 1.0
    assert abs(top_singular(conv.weight) - 1) < 1e-9
    conv.eval()  # the stored u moves only in training mode
    u = param.u.clone()
    _ = conv.weight
    assert torch.equal(u, param.u)


def test_sigma_reparam_gradient_treats_u_and_v_as_constants() -> None:
    """∂/∂W Σ G ⊙ γW/σ = (γ/σ) G − γ ⟨G, W⟩/σ² · v uᵀ, with σ = vᵀWu and u, v from the
    no-grad power-iteration step (a finite-difference check would also differentiate u and v)."""
    torch.manual_seed(2)
    w = torch.randn(4, 3, dtype=torch.float64)
    param = SigmaReparamWeight(w, 0, gamma_one=False).double().eval()
    x = (w + 0.1 * torch.randn(4, 3, dtype=torch.float64)).requires_grad_(True)
    grad_out = torch.randn(4, 3, dtype=torch.float64)
    (param(x) * grad_out).sum().backward()
    with torch.no_grad():
        v = F.normalize(x.mv(param.u), dim=0)
        u = F.normalize(x.t().mv(v), dim=0)
        sigma = v @ x @ u
        gamma = param.gamma
        expected = gamma / sigma * grad_out - gamma * (grad_out * x).sum() / sigma**2 * torch.outer(
            v, u
        )
    assert x.grad is not None
    torch.testing.assert_close(x.grad, expected, rtol=1e-9, atol=1e-12)
    gamma_in = param.gamma.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda g: torch.func.functional_call(param, {"gamma": g}, (x.detach(),)), (gamma_in,)
    )


# --- weight_compander (function NOT verified) -----------------------------------------------------


def test_weight_compander_has_no_defaults() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(minimal_job([{"name": "weight_compander"}]))
    found = {(e["path"], e["message"]) for e in info.value.errors}
    for field in ("function", "bound", "slope"):
        assert (f"regularizers[0].{field}", "field required") in found


def test_weight_compander_hand_values() -> None:
    w = torch.tensor([0.5, -1.0, 0.0], dtype=torch.float64)
    tanh = CompanderWeight("tanh", 2.0, 3.0, learnable=False).double()
    torch.testing.assert_close(tanh(w), 2.0 * torch.tanh(1.5 * w), rtol=1e-12, atol=0)
    atan = CompanderWeight("arctan", 2.0, 3.0, learnable=False).double()
    expected = 2.0 * (2 / math.pi) * torch.atan(math.pi * 3.0 * w / (2 * 2.0))
    torch.testing.assert_close(atan(w), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("kind", ["tanh", "arctan"])
def test_weight_compander_shape_properties(kind: str) -> None:
    f = CompanderWeight(kind, 0.8, 4.0, learnable=False).double()
    w = torch.linspace(-1, 1, 2001, dtype=torch.float64)
    out = f(w)
    torch.testing.assert_close(f(-w), -out, rtol=0, atol=0)  # odd
    assert (out.diff() > 0).all()  # increasing
    assert out.abs().max() < 0.8  # bounded
    assert f(torch.tensor([-1e6, 1e6], dtype=torch.float64)).abs().max() <= 0.8
    zero = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(f(zero).sum(), zero)
    torch.testing.assert_close(float(slope), 4.0)  # expands near zero


def test_weight_compander_learnable_gradcheck_and_parameters() -> None:
    layer = nn.Linear(3, 2).double()
    reparametrize(
        {
            "name": "weight_compander",
            "function": "tanh",
            "bound": 1.0,
            "slope": 2.0,
            "learnable": True,
        },
        layer,
    )
    names = {n for n, _ in layer.named_parameters()}
    assert {"parametrizations.weight.0.log_bound", "parametrizations.weight.0.log_slope"} <= names
    f = CompanderWeight("arctan", 1.5, 2.5, learnable=True).double()
    w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    logs = (
        f.log_bound.detach().clone().requires_grad_(True),
        f.log_slope.detach().clone().requires_grad_(True),
    )
    assert torch.autograd.gradcheck(
        lambda x, b, s: torch.func.functional_call(f, {"log_bound": b, "log_slope": s}, (x,)),
        (w, *logs),
    )


# --- lawn -----------------------------------------------------------------------------------------


def test_fixed_norm_worked_example_and_projection() -> None:
    fixed = FixedNorm(torch.float64, CPU)
    v = torch.tensor([6.0, 8.0], dtype=torch.float64, requires_grad=True)
    assert torch.equal(fixed(v), v)  # free phase: the identity
    fixed.radius.fill_(5.0)
    torch.testing.assert_close(fixed(v), torch.tensor([3.0, 4.0], dtype=torch.float64))
    # at ‖V‖ = c the Jacobian is the projection that removes the radial component
    u = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
    (fixed(u) * torch.tensor([1.0, 2.0], dtype=torch.float64)).sum().backward()
    assert u.grad is not None
    torch.testing.assert_close(float(u.grad @ u.detach()), 0.0, atol=1e-12, rtol=0)
    torch.testing.assert_close(u.grad, torch.tensor([-0.32, 0.24], dtype=torch.float64))
    assert torch.autograd.gradcheck(
        fixed, (torch.randn(3, 2, dtype=torch.float64, requires_grad=True),)
    )


def test_lawn_default_layers_are_the_homogeneous_tail() -> None:
    with_norm = nn.Sequential(
        nn.Linear(4, 6), nn.LayerNorm(6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)
    )
    reg = build({"name": "lawn"})
    reg.configure_model(with_norm)
    assert [n for n, _ in reg.layers] == ["3", "5"]
    plain = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    reg = build({"name": "lawn"})
    reg.configure_model(plain)
    assert [n for n, _ in reg.layers] == ["0", "2"]
    reg = build({"name": "lawn", "layers": ["0"]})
    reg.configure_model(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)))
    assert [n for n, _ in reg.layers] == ["0"]


def test_lawn_switch_point() -> None:
    assert build({"name": "lawn"}, total_steps=200).free_steps == 20
    assert build({"name": "lawn", "free_fraction": 0.25}, 200).free_steps == 50
    assert build({"name": "lawn", "free_steps": 7}, 200).free_steps == 7


def test_lawn_keeps_the_norm_after_the_switch() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    reg = build({"name": "lawn", "free_steps": 3})
    stack = RegularizerStack([reg])
    stack.configure_model(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2)
    layers = [m for _, m in reg.layers]
    x = torch.randn(32, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (32,))
    norms: list[list[float]] = []
    for step in range(10):
        train_step(model, opt, x, y, F.cross_entropy)
        stack.after_step(model, opt, step)
        norms.append([float(m.weight.detach().norm()) for m in layers])
        radii = [float(m.parametrizations.weight[0].radius) for m in layers]
        if step < 2:
            assert radii == [0.0, 0.0]  # still free
        else:
            assert radii == norms[2]  # c_l: the norm at the switch
            for m, c in zip(layers, radii, strict=True):
                assert abs(float(m.weight.detach().norm()) - c) < 1e-6
                assert abs(float(m.parametrizations.weight.original.detach().norm()) - c) < 1e-6
    assert norms[0] != norms[1]  # the free phase does move the norms
    assert "2.parametrizations.weight.0.radius" in model.state_dict()


def test_lawn_refuses_an_already_reparametrised_layer() -> None:
    model = nn.Sequential(nn.Linear(4, 3))
    build({"name": "weight_norm"}).configure_model(model)
    with pytest.raises(ValueError, match="already reparametrised"):
        build({"name": "lawn"}).configure_model(model)


# --- layer choice ---------------------------------------------------------------------------------


def test_layer_patterns_choose_layers() -> None:
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    build({"name": "spectral_norm", "layers": ["0"]}).configure_model(model)
    assert hasattr(model[0], "parametrizations") and not hasattr(model[2], "parametrizations")
    with pytest.raises(ValueError, match=r"no Linear/Conv layer matches \['head\*'\].*0, 2"):
        build({"name": "weight_norm", "layers": ["head*"]}).configure_model(model)


# --- state and resume -----------------------------------------------------------------------------

RESUME_CASES = [
    {"name": "spectral_norm"},
    {"name": "weight_norm"},
    {"name": "weight_standardization"},
    {"name": "weight_standardization", "scaled": True},
    {"name": "sigma_reparam"},
    {"name": "weight_compander", "function": "tanh", "bound": 1.0, "slope": 2.0, "learnable": True},
    {"name": "lawn", "free_steps": 2},
    {"name": "lawn", "free_steps": 6},
]


@pytest.mark.parametrize("raw", RESUME_CASES, ids=lambda r: "-".join(str(v) for v in r.values()))
def test_resumed_run_is_bit_identical(raw: dict[str, Any]) -> None:
    assert_resumes_bit_identically([raw], setup(), sequential_batches(), 4)


# --- through the training loop --------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", RESUME_CASES[:-1], ids=lambda r: "-".join(str(v) for v in r.values())
)
def test_trains_the_minimal_job(raw: dict[str, Any]) -> None:
    assert train_minimal_job([raw]).final_metrics["val_accuracy"] > 0.3


# --- settings errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"name": "spectral_norm", "n_power_iterations": 0}, "regularizers[0].n_power_iterations"),
        ({"name": "spectral_norm", "layers": [""]}, "regularizers[0].layers[0]"),
        ({"name": "weight_norm", "per_output": "sometimes"}, "regularizers[0].per_output"),
        ({"name": "weight_standardization", "eps": -1.0}, "regularizers[0].eps"),
        ({"name": "sigma_reparam", "gamma_init": "two"}, "regularizers[0].gamma_init"),
        (
            {"name": "weight_compander", "function": "tanh", "bound": 0, "slope": 2},
            "regularizers[0].bound",
        ),
        (
            {"name": "weight_compander", "function": "erf", "bound": 1, "slope": 2},
            "regularizers[0].function",
        ),
        ({"name": "lawn", "free_fraction": 1.0}, "regularizers[0].free_fraction"),
        ({"name": "lawn", "free_steps": -1}, "regularizers[0].free_steps"),
        ({"name": "lawn", "switch": 3}, "regularizers[0].switch"),
    ],
)
def test_bad_settings_name_the_path(raw: dict[str, Any], path: str) -> None:
    assert_bad_setting(raw, path)
