"""LSUV (Mishkin & Matas, 2016): unit output variance per layer, on the batch and held out."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.inits.helpers import ResCNN, plain_mlp
from trainlib.components.inits_base import InitContext, InitError, apply_init
from trainlib.components.inits_lsuv import forward_order, output_variance


def variances(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    names = {m: n for n, m in model.named_modules()}
    model.eval()
    with torch.no_grad():
        return {names[m]: output_variance(model, m, x) for m in forward_order(model, x)}


@pytest.mark.parametrize("seed", [0, 1])
def test_every_layer_has_unit_variance_on_a_held_out_batch(seed: int) -> None:
    torch.manual_seed(seed)
    model = plain_mlp(20, [64, 48, 32], 5)
    data = torch.randn(1024, 20) * 3 + 1  # neither centred nor unit scale
    apply_init({"name": "lsuv", "sample_size": 512}, model, InitContext(data[:512]))
    held_out = variances(model, data[512:])
    assert len(held_out) == 4
    for name, var in held_out.items():
        assert 0.9 <= var <= 1.1, (name, var)
    # on its own batch every layer is within the tolerance
    assert all(abs(v - 1) < 0.1 for v in variances(model, data[:512]).values())


def test_bias_free_layers_are_scaled_orthogonal_matrices() -> None:
    """Orthonormal pre-init, then one rescale per layer: W Wᵀ = c·I (rows ≤ fan_in)."""
    torch.manual_seed(0)
    model = plain_mlp(40, [32, 16], 8)
    apply_init({"name": "lsuv"}, model, InitContext(torch.randn(512, 40)))
    for layer in model:
        if isinstance(layer, nn.Linear):
            w = layer.weight.detach().double()
            gram = w @ w.T
            c = gram.diagonal().mean()
            assert torch.allclose(gram, c * torch.eye(len(w), dtype=torch.float64), atol=1e-5)
            assert torch.count_nonzero(layer.bias) == 0


def test_convolutions_and_residual_blocks() -> None:
    torch.manual_seed(0)
    model = ResCNN(channels=8, depth=2)
    images = torch.randn(256, 1, 8, 8)
    apply_init({"name": "lsuv"}, model, InitContext(images[:128]))
    held_out = variances(model, images[128:])
    assert len(held_out) == 1 + 2 * 2 + 1  # stem, two convs per block, head
    assert all(0.9 <= v <= 1.1 for v in held_out.values()), held_out


def test_training_mode_and_running_statistics_are_left_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    apply_init({"name": "lsuv"}, model, InitContext(torch.randn(64, 6)))
    assert model.training
    bn = model[1]
    assert isinstance(bn, nn.BatchNorm1d)
    assert torch.equal(bn.running_mean, torch.zeros(16))
    assert int(bn.num_batches_tracked) == 0


def test_needs_a_batch() -> None:
    with pytest.raises(InitError, match="batch of training inputs"):
        apply_init({"name": "lsuv"}, plain_mlp(3, [4], 2), InitContext())
