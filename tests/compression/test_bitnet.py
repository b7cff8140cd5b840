"""BitNet b1.58 (absmean) and b1.58 Reloaded (absmedian): formulas on the worked example of
formulas-nets §4.1, a NumPy reference forward, the straight-through gradient, the module swap and
a digits job."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from tests.compression.helpers import digits_job, run
from trainlib.compression import BitLinear, BitNetSettings, apply_bitnet
from trainlib.compression.bitnet import absmax_quantize, ternary, weight_scale
from trainlib.spec import parse_spec

W = torch.tensor([[0.4, -0.05, 0.2], [-0.9, 0.1, 0.0]])


@pytest.mark.parametrize(
    ("scale", "gamma", "levels"),
    [
        ("absmean", 0.275, [[1, 0, 1], [-1, 0, 0]]),
        ("absmedian", 0.1, [[1, 0, 1], [-1, 1, 0]]),  # torch's lower median of 6 values
    ],
)
def test_worked_example(scale: str, gamma: float, levels: list[list[int]]) -> None:
    assert weight_scale(W, scale).item() == pytest.approx(gamma)
    torch.testing.assert_close(ternary(W, scale), torch.tensor(levels) * gamma)


def test_activation_worked_example() -> None:
    """x = [0.5, -1, 0.25] with Q_b = 128: x_q = [64, -128, 32], dequantized exactly."""
    x = torch.tensor([[0.5, -1.0, 0.25]])
    torch.testing.assert_close(absmax_quantize(x, 8), x)
    torch.testing.assert_close(absmax_quantize(x, 8) * 128, torch.tensor([[64.0, -128.0, 32.0]]))


@pytest.mark.parametrize("scale", ["absmean", "absmedian"])
def test_forward_weights_are_ternary(scale: str) -> None:
    """The weight the forward pass uses takes only the values -γ, 0 and +γ."""
    torch.manual_seed(0)
    layer = apply_and_get(scale)
    seen: list[torch.Tensor] = []
    original = F.linear

    def spy(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        seen.append(w.detach().clone())
        return original(x, w, b)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(F, "linear", spy)
        layer(torch.randn(5, 16))
    (used,) = seen
    gamma = weight_scale(layer.weight, scale).item()
    values = set(torch.unique(used).tolist())
    assert values <= {-gamma, 0.0, gamma} and len(values) == 3
    magnitude = layer.weight.detach().abs().numpy()
    expected = (
        magnitude.mean() if scale == "absmean" else np.sort(magnitude.ravel())[(16 * 8 - 1) // 2]
    )
    assert gamma == pytest.approx(float(expected), rel=1e-6)


def apply_and_get(scale: str) -> BitLinear:
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    apply_bitnet(model, BitNetSettings(scale=scale))
    layer = model[0]
    assert isinstance(layer, BitLinear)
    return layer


def numpy_bitlinear(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Independent reference: parameter-free LayerNorm, 8-bit absmax per row, absmean ternary."""
    xn = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    s_x = 128 / np.maximum(np.abs(xn).max(-1, keepdims=True), 1e-5)
    xq = np.clip(np.round(xn * s_x), -128, 127) / s_x
    gamma = max(np.abs(w).mean(), 1e-5)
    wq = np.clip(np.round(w / gamma), -1, 1) * gamma
    out: np.ndarray = xq @ wq.T + b
    return out


def test_forward_matches_numpy_reference() -> None:
    torch.manual_seed(1)
    layer = apply_and_get("absmean")
    x = torch.randn(6, 16, dtype=torch.float64)
    layer.double()
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    got = layer(x).detach().numpy()
    np.testing.assert_allclose(got, numpy_bitlinear(x.numpy(), w, b), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("scale", ["absmean", "absmedian"])
def test_straight_through_gradient(scale: str) -> None:
    """∂L/∂W (latent) equals ∂L/∂W_q: the gradient of the same linear map at the quantized
    weight, taken as a leaf; likewise for the input through the activation quantizer."""
    torch.manual_seed(2)
    layer = apply_and_get(scale)
    layer.input_norm = False
    x = torch.randn(4, 16, requires_grad=True)
    target = torch.randn(4, 8)
    F.mse_loss(layer(x), target).backward()
    assert layer.weight.grad is not None and x.grad is not None

    w_q = layer.quantized_weight().detach().requires_grad_(True)
    x_q = absmax_quantize(x.detach(), 8).requires_grad_(True)
    F.mse_loss(F.linear(x_q, w_q, layer.bias.detach()), target).backward()
    torch.testing.assert_close(layer.weight.grad, w_q.grad)
    torch.testing.assert_close(x.grad, x_q.grad)


def test_swap_keeps_parameters_and_skips_head() -> None:
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 3))
    params = [id(p) for p in model.parameters()]
    keys = list(model.state_dict())
    assert apply_bitnet(model, BitNetSettings()) == ["0", "2"]
    assert [type(m) for m in model] == [BitLinear, nn.ReLU, BitLinear, nn.Linear]
    assert [id(p) for p in model.parameters()] == params and list(model.state_dict()) == keys
    assert apply_bitnet(model, BitNetSettings(include_head=True)) == ["3"]


def test_spec_rejects_unknown_scale() -> None:
    with pytest.raises(ValidationError):
        BitNetSettings(scale="absmax")
    raw = digits_job(quantization={"name": "bitnet158", "bits": 2})
    with pytest.raises(ValueError, match=r"quantization\.bits"):
        parse_spec(raw)


@pytest.mark.parametrize("scale", ["absmean", "absmedian"])
def test_digits_trains_with_ternary_weights(scale: str) -> None:
    result, _ = run(digits_job(steps=150, quantization={"name": "bitnet158", "scale": scale}))
    assert result.final_metrics["val_accuracy"] > 0.85
