"""Residual blocks, stochastic depth and the residual contract every model exposes."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import trainlib.components  # noqa: F401  (registers the models)
from trainlib.components.blocks import DropPath, ResidualBlock, residual_blocks
from trainlib.data import DataInfo
from trainlib.registries import MODELS

IMAGES = DataInfo((1, 8, 8), 10)
FLAT = DataInfo((64,), 10)
TEXT = DataInfo((8,), 11, task="sequence", vocab_size=11)

MODEL_CASES: list[tuple[dict[str, Any], DataInfo, torch.Tensor]] = [
    ({"name": "mlp", "hidden": [16, 16, 16]}, FLAT, torch.randn(4, 64)),
    ({"name": "cnn", "widths": [4, 8], "blocks": [1, 1]}, IMAGES, torch.randn(4, 1, 8, 8)),
    (
        {"name": "transformer", "d_model": 16, "n_heads": 2, "max_len": 8},
        TEXT,
        torch.randint(0, 11, (4, 8)),
    ),
]


def _block_inputs(model: nn.Module, x: torch.Tensor) -> list[tuple[ResidualBlock, torch.Tensor]]:
    """Each residual block with the input it receives on x."""
    seen: list[tuple[ResidualBlock, torch.Tensor]] = []
    hooks = [
        b.register_forward_pre_hook(lambda m, args: seen.append((m, args[0].detach())))
        for b in residual_blocks(model)
    ]
    model(x)
    for h in hooks:
        h.remove()
    return seen


def test_drop_path_is_the_identity_at_evaluation() -> None:
    layer = DropPath(0.5).eval()
    x = torch.randn(8, 3)
    assert torch.equal(layer(x), x)


def test_drop_path_drops_whole_samples_and_keeps_the_expectation() -> None:
    torch.manual_seed(0)
    layer = DropPath(0.25).train()
    out = layer(torch.ones(40000, 3))
    rows = out[:, 0]
    torch.testing.assert_close(rows.unique(), torch.tensor([0.0, 1 / 0.75]))
    assert torch.equal(out, rows[:, None].expand(-1, 3))  # one decision per sample
    assert abs(rows.mean().item() - 1.0) < 0.02
    assert abs((rows == 0).float().mean().item() - 0.25) < 0.01


def test_rezero_block_starts_as_the_identity_and_only_its_gate_learns_first() -> None:
    branch = nn.Sequential(nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 5))
    block = ResidualBlock(branch, "rezero")
    x = torch.randn(3, 5)
    out = block(x)
    assert torch.equal(out, x)
    out.pow(2).sum().backward()
    assert block.gate is not None and block.gate.grad is not None and block.gate.grad != 0
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in branch.parameters())


def test_fixup_block_has_a_unit_multiplier_and_zero_bias() -> None:
    branch = nn.Sequential(nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 5))
    block = ResidualBlock(branch, "fixup")
    assert block.gate is not None and block.gate.item() == 1.0
    assert block.bias is not None and block.bias.item() == 0.0
    x = torch.randn(3, 5)
    torch.testing.assert_close(block(x), x + branch(x))
    assert block.branch_layers() == [branch[0], branch[2]]


@pytest.mark.parametrize(("config", "info", "x"), MODEL_CASES)
def test_every_model_exposes_stem_head_and_blocks(
    config: dict[str, Any], info: DataInfo, x: torch.Tensor
) -> None:
    model = MODELS.build({**config, "residual": "plain"}, info)
    assert isinstance(model.stem, nn.Linear | nn.Conv2d | nn.Embedding)
    assert isinstance(model.head, nn.Linear)
    blocks = residual_blocks(model)
    assert blocks
    for block in blocks:
        layers = block.branch_layers()
        assert len(layers) >= 1 and all(isinstance(m, nn.Linear | nn.Conv2d) for m in layers)


@pytest.mark.parametrize(("config", "info", "x"), MODEL_CASES)
def test_rezero_models_start_with_identity_blocks(
    config: dict[str, Any], info: DataInfo, x: torch.Tensor
) -> None:
    torch.manual_seed(0)
    model = MODELS.build({**config, "residual": "rezero", "norm": "layernorm"}, info).eval()
    for block, inputs in _block_inputs(model, x):
        assert torch.equal(block(inputs), inputs)


@pytest.mark.parametrize(("config", "info", "x"), MODEL_CASES)
def test_fixup_blocks_are_the_identity_once_the_last_layer_is_zero(
    config: dict[str, Any], info: DataInfo, x: torch.Tensor
) -> None:
    torch.manual_seed(0)
    model = MODELS.build({**config, "residual": "fixup"}, info).eval()
    for block in residual_blocks(model):
        last = block.branch_layers()[-1]
        with torch.no_grad():
            last.weight.zero_()
            if last.bias is not None:
                last.bias.zero_()
    pairs = _block_inputs(model, x)
    assert pairs
    for block, inputs in pairs:
        torch.testing.assert_close(block(inputs), inputs, rtol=0, atol=0)


def test_branch_layers_come_in_forward_order() -> None:
    model = MODELS.build(MODEL_CASES[2][0], TEXT)
    attention, feed_forward = residual_blocks(model)[:2]
    assert [type(m).__name__ for m in attention.branch_layers()] == ["Linear", "Linear"]
    assert attention.branch_layers()[0].out_features == 3 * 16  # qkv, then the output projection
    assert feed_forward.branch_layers()[0].out_features == 4 * 16  # fc1 (d_ff = 4 d), then fc2
    cnn = MODELS.build(MODEL_CASES[1][0], IMAGES)
    convs = residual_blocks(cnn)[0].branch_layers()
    assert [type(m) for m in convs] == [nn.Conv2d, nn.Conv2d]
