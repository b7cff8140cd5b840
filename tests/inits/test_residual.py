"""ZerO (Zhao et al., 2022) and Fixup (Zhang et al., 2019): every residual block starts as the
identity; ZerO is deterministic; Fixup's scaling is L^(-1/(2m-2))."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from scipy.linalg import hadamard as scipy_hadamard
from torch import nn

from tests.inits.helpers import ResCNN, ResMLP, block_inputs, plain_mlp
from trainlib.components.blocks import ResidualMode, residual_blocks
from trainlib.components.inits_base import InitContext, InitError, apply_init
from trainlib.components.inits_residual import fixup_factor, hadamard, zero_matrix
from trainlib.data import DataInfo
from trainlib.registries import MODELS

IMAGES = DataInfo((1, 8, 8), 3)


def registered(name: str, info: DataInfo, seed: int, **settings: object) -> nn.Module:
    torch.manual_seed(seed)
    model: nn.Module = MODELS.build({"name": name, **settings}, info)
    return model


def assert_blocks_are_identity(model: nn.Module, x: torch.Tensor) -> None:
    seen = block_inputs(model, x)
    assert seen, "the model has no residual blocks"
    for block, inputs in seen:
        with torch.no_grad():
            assert torch.equal(block(inputs), inputs)


# --- ZerO -------------------------------------------------------------------------------------


def test_hadamard_matches_scipy() -> None:
    for p in (1, 2, 8, 64):
        assert torch.equal(hadamard(p), torch.tensor(scipy_hadamard(p), dtype=torch.float32))


def test_zero_matrix_worked_examples() -> None:
    assert torch.equal(zero_matrix(3, 2), 0.5 * torch.tensor([[1.0, 1], [1, -1], [1, 1]]))
    c = 2 ** (-3 / 2)
    rows = [[1, 1, 1], [1, -1, 1], [1, 1, -1], [1, -1, -1], [1, 1, 1]]
    assert torch.allclose(zero_matrix(5, 3), c * torch.tensor(rows, dtype=torch.float32))
    # m ≤ n: the partial identity, W x = the first m coordinates of x
    x = torch.randn(7)
    assert torch.equal(zero_matrix(4, 7) @ x, x[:4])
    # m > n: every entry is ±c
    big = zero_matrix(40, 9)
    assert torch.allclose(big.abs(), torch.full_like(big, 2 ** (-6 / 2)))


def zero_state(model_fn: Callable[[], nn.Module], seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = model_fn()
    apply_init({"name": "zero"}, model, InitContext())
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "model_fn",
    [
        lambda: ResMLP(width=16, depth=2, inputs=10, classes=4),
        lambda: ResCNN(channels=8, depth=2),
        lambda: plain_mlp(6, [32, 8], 3),
        lambda: MODELS.build({"name": "cnn", "norm": "none"}, IMAGES),
        lambda: MODELS.build(
            {"name": "transformer", "d_model": 16, "n_layers": 2, "n_heads": 2, "max_len": 8},
            DataInfo((8,), 11, "sequence", vocab_size=11),
        ),
    ],
    ids=["resmlp", "rescnn", "mlp", "cnn", "transformer"],
)
def test_zero_is_identical_across_seeds(model_fn: Callable[[], nn.Module]) -> None:
    a, b = zero_state(model_fn, 0), zero_state(model_fn, 1)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_zero_blocks_are_the_identity_at_step_zero() -> None:
    model = ResMLP(width=16, depth=3)
    apply_init({"name": "zero"}, model, InitContext())
    assert_blocks_are_identity(model, torch.randn(5, 10))
    cnn = registered("cnn", IMAGES, 0, norm="none")
    apply_init({"name": "zero"}, cnn, InitContext())
    assert_blocks_are_identity(cnn, torch.randn(4, 1, 8, 8))


def test_zero_conv_is_the_matrix_rule_at_the_kernel_centre() -> None:
    model = ResCNN(channels=8, depth=1)
    apply_init({"name": "zero"}, model, InitContext())
    stem = model.stem.weight  # 8 out, 1 in: Hadamard rule
    assert torch.equal(stem[:, :, 1, 1], zero_matrix(8, 1))
    mask = torch.ones(3, 3, dtype=torch.bool)
    mask[1, 1] = False
    assert torch.count_nonzero(stem[:, :, mask]) == 0
    first = model.blocks[0].branch[0].weight  # 8 -> 8: the identity at the centre
    assert torch.equal(first[:, :, 1, 1], torch.eye(8))


# --- Fixup ------------------------------------------------------------------------------------


def test_fixup_factor_worked_examples() -> None:
    assert fixup_factor(54, 2) == pytest.approx(0.1361, abs=1e-4)  # ResNet-110
    assert fixup_factor(16, 3) == pytest.approx(0.5)  # ResNet-50, bottleneck


@pytest.mark.parametrize("mode", ["plain", "fixup"])
def test_fixup_blocks_start_as_identity_and_logits_at_zero(mode: ResidualMode) -> None:
    torch.manual_seed(0)
    model = ResMLP(width=16, depth=4, mode=mode)
    apply_init({"name": "fixup"}, model, InitContext())
    x = torch.randn(6, 10)
    assert_blocks_are_identity(model, x)
    with torch.no_grad():
        assert torch.count_nonzero(model(x)) == 0  # zero head: CE starts at log K


def test_fixup_scales_the_other_branch_layers() -> None:
    torch.manual_seed(0)
    width, depth = 256, 9
    model = ResMLP(width=width, depth=depth, mode="fixup")
    apply_init({"name": "fixup"}, model, InitContext())
    expected = math.sqrt(2 / width) * depth ** (-1 / 2)  # m = 2 layers per branch
    firsts = torch.cat([b.branch[0].weight.flatten() for b in residual_blocks(model)])
    assert firsts.std().item() == pytest.approx(expected, rel=0.01)
    for block in residual_blocks(model):
        assert torch.count_nonzero(block.branch[2].weight) == 0


def test_fixup_on_the_registered_cnn() -> None:
    cnn = registered("cnn", IMAGES, 0, residual="fixup", norm="none")
    apply_init({"name": "fixup"}, cnn, InitContext())
    x = torch.randn(4, 1, 8, 8)
    assert_blocks_are_identity(cnn, x)
    with torch.no_grad():
        assert torch.count_nonzero(cnn(x)) == 0


def test_fixup_needs_residual_blocks() -> None:
    with pytest.raises(InitError, match="residual blocks"):
        apply_init({"name": "fixup"}, plain_mlp(3, [4], 2), InitContext())


def test_fixup_scalars_train_at_a_tenth_of_the_lr() -> None:
    cnn = registered("cnn", IMAGES, 0, residual="fixup", norm="none")
    result = apply_init({"name": "fixup"}, cnn, InitContext())
    scalars = [p for p in cnn.parameters() if p.ndim == 0]
    assert len(scalars) > len(residual_blocks(cnn))  # a gate and biases per block
    assert {id(s.param) for s in result.scales} == {id(p) for p in scalars}
    assert {s.lr for s in result.scales} == {0.1}
