"""Inits that make every residual block start as the identity: `zero` (ZerO) and `fixup`.

Both zero the last layer of each residual branch (`branch_layers()[-1]` of the ResidualBlock
contract), so block(x) = x + gate·branch(x) = x at step 0.
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainlib.components.inits_base import (
    InitContext,
    InitError,
    InitResult,
    ParamScale,
    branch_layers,
    head_of,
    residual_blocks,
    stem_of,
    weight_layers,
    weight_of,
    zero_layer,
)
from trainlib.registries import INITS

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


class ZerOSettings(BaseModel):
    """Deterministic: no settings, no random numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FixupSettings(BaseModel):
    """Fixup's rules; `zero_head` is the paper's zero-initialized classifier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zero_head: bool = Field(True, description="zero the classification head (weight and bias)")
    scalar_lr_mult: float = Field(
        0.1, gt=0, le=1, description="lr multiplier of the scalar biases and multipliers"
    )


def hadamard(p: int) -> torch.Tensor:
    """Sylvester's Hadamard matrix of order p (a power of two), entries ±1."""
    h = torch.ones(1, 1)
    while h.shape[0] < p:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def zero_matrix(m: int, n: int) -> torch.Tensor:
    """ZerO's Algorithm 1 for an (out m, in n) weight: the partial identity I_{m×n} when m ≤ n,
    else c·(the first m rows and n columns of H_p), p = 2^⌈log2 m⌉, c = 2^(−k/2)."""
    if m <= n:
        return torch.eye(m, n)
    k = math.ceil(math.log2(m))
    return 2 ** (-k / 2) * hadamard(2**k)[:m, :n]


def zero_init_(weight: torch.Tensor, conv: bool) -> None:
    """A conv kernel gets the matrix rule at its spatial centre, zeros elsewhere; any other
    tensor of 2+ dims is treated as (dim 0, the rest flattened)."""
    with torch.no_grad():
        if conv:
            weight.zero_()
            # the kernel's centre tap: (out, in) at the middle of every spatial dim
            centre = weight.flatten(2)[:, :, weight[0, 0].numel() // 2]
            centre.copy_(zero_matrix(*weight.shape[:2]).to(weight.dtype))
        else:
            rows = weight.shape[0]
            flat = zero_matrix(rows, weight[0].numel()).reshape(weight.shape)
            weight.copy_(flat.to(weight.dtype))


@INITS.register(
    "zero",
    settings=ZerOSettings,
    summary="ZerO: identity and Hadamard weights, residual branches ending in zero; seed-free",
    paper="ZerO Initialization: Initializing Neural Networks with only Zeros and Ones "
    "(Zhao, Schäfer & Anandkumar, 2022)",
)
def build_zero(s: ZerOSettings, model: nn.Module, ctx: InitContext | None = None) -> None:
    # every tensor of 2+ dims follows the matrix rule and every bias is 0; the other 1-D
    # parameters (norm gains, residual gates) have deterministic defaults, so the result is
    # the same for every seed
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if param.ndim >= 2:
                zero_init_(param, isinstance(module, _CONVS) and name == "weight")
            elif name == "bias":
                with torch.no_grad():
                    param.zero_()
    for block in residual_blocks(model):
        zero_layer(branch_layers(block)[-1])


def fixup_factor(num_branches: int, layers_per_branch: int) -> float:
    """L^(−1/(2m−2)): L residual branches of m weight layers each."""
    return float(num_branches ** (-1.0 / (2 * layers_per_branch - 2)))


@INITS.register(
    "fixup",
    settings=FixupSettings,
    summary="Fixup: zero head and last branch layers, other branch layers He x L^(-1/(2m-2))",
    paper="Fixup Initialization: Residual Learning Without Normalization "
    "(Zhang, Dauphin & Ma, 2019)",
)
def build_fixup(s: FixupSettings, model: nn.Module, ctx: InitContext | None = None) -> InitResult:
    blocks = residual_blocks(model)
    if not blocks:
        raise InitError(
            f"fixup needs a model with residual blocks; {type(model).__name__} has none"
        )
    head, stem = head_of(model), stem_of(model)
    in_branches = {id(layer) for block in blocks for layer in branch_layers(block)}
    # layers between blocks (downsampling) get plain He, unscaled, as the reference's
    # downsample convs; the stem keeps its own init, as in the reference
    for between in weight_layers(model):
        if id(between) not in in_branches and between is not head and between is not stem:
            _he_fan_out(between, 1.0)
    if s.zero_head:
        zero_layer(head)
    for block in blocks:
        layers = branch_layers(block)
        zero_layer(layers[-1])
        if len(layers) < 2:
            continue
        factor = fixup_factor(len(blocks), len(layers))
        for layer in layers[:-1]:
            _he_fan_out(layer, factor)
    # the reference trains every scalar bias and multiplier at lr/10 (cifar_train.py): at the
    # full rate their summed gradients make SGD diverge
    scalars = [p for p in model.parameters() if p.ndim == 0]
    return InitResult(tuple(ParamScale(p, s.scalar_lr_mult) for p in scalars))


def _he_fan_out(layer: nn.Module, factor: float) -> None:
    """He normal with fan-out, as the reference code: std = sqrt(2 / (C_out·k·k)), bias 0."""
    with torch.no_grad():
        weight = weight_of(layer)
        fan_out = weight.shape[0] * weight[0, 0].numel()
        weight.normal_(0.0, math.sqrt(2.0 / fan_out) * factor)
        bias = getattr(layer, "bias", None)
        if isinstance(bias, torch.Tensor):
            bias.zero_()
