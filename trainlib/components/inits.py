"""Data-independent weight initializations, applied in place to a built model.

Each rule initializes the weight of every Linear/Conv layer and zeroes its bias; embeddings and
normalization layers keep their own init. Every builder takes (settings, model, InitContext) and
returns an InitResult when it asks something of the optimizer (per-parameter lr multipliers:
mup, fixup), else None (see inits_base.apply_init); the data-dependent and structural inits
live in inits_lsuv, inits_residual, inits_mup and inits_selection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainlib.components.inits_base import InitContext, weight_layers
from trainlib.registries import INITS


class DefaultSettings(BaseModel):
    """Keep torch's default initialization of each layer."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    gain: float = Field(1.0, gt=0, le=100)


class KaimingSettings(BaseModel):
    """He init: std = gain/sqrt(fan) (normal) or bound = gain·sqrt(3/fan) (uniform)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["fan_in", "fan_out"] = "fan_in"
    nonlinearity: Literal["relu", "leaky_relu", "linear", "tanh", "selu"] = "relu"


class TruncNormalSettings(BaseModel):
    """N(0, std²) truncated to ±`truncate_at`·std (the ViT / timm init, std 0.02)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    std: float = Field(0.02, gt=0, le=10)
    truncate_at: float = Field(2.0, gt=0, le=10, description="cut-off, in standard deviations")
    mean: float = Field(0.0, ge=-10, le=10)


def apply_to_weights(model: nn.Module, fn: Callable[[torch.Tensor], object]) -> None:
    """`fn` on the weight of every Linear/Conv layer, its bias zeroed."""
    with torch.no_grad():
        for module in weight_layers(model):
            fn(module.weight)
            if module.bias is not None:
                module.bias.zero_()


@INITS.register("default", settings=DefaultSettings, summary="torch's default init of each layer")
def build_default(s: DefaultSettings, model: nn.Module, ctx: InitContext | None = None) -> None:
    return None


@INITS.register(
    "kaiming_normal",
    settings=KaimingSettings,
    summary="He normal init (fan_in, ReLU gain)",
    paper="Delving Deep into Rectifiers (He et al., 2015)",
)
def build_kaiming_normal(
    s: KaimingSettings, model: nn.Module, ctx: InitContext | None = None
) -> None:
    apply_to_weights(
        model, lambda w: nn.init.kaiming_normal_(w, mode=s.mode, nonlinearity=s.nonlinearity)
    )


@INITS.register(
    "kaiming_uniform",
    settings=KaimingSettings,
    summary="He uniform init (fan_in, ReLU gain)",
    paper="Delving Deep into Rectifiers (He et al., 2015)",
)
def build_kaiming_uniform(
    s: KaimingSettings, model: nn.Module, ctx: InitContext | None = None
) -> None:
    apply_to_weights(
        model, lambda w: nn.init.kaiming_uniform_(w, mode=s.mode, nonlinearity=s.nonlinearity)
    )


@INITS.register(
    "xavier_uniform",
    settings=GainSettings,
    summary="Glorot uniform init",
    paper="Understanding the difficulty of training deep feedforward neural networks "
    "(Glorot & Bengio, 2010)",
)
def build_xavier_uniform(s: GainSettings, model: nn.Module, ctx: InitContext | None = None) -> None:
    apply_to_weights(model, lambda w: nn.init.xavier_uniform_(w, gain=s.gain))


@INITS.register(
    "orthogonal",
    settings=GainSettings,
    summary="orthogonal weight matrices",
    paper="Exact solutions to the nonlinear dynamics of learning in deep linear neural networks "
    "(Saxe et al., 2014)",
)
def build_orthogonal(s: GainSettings, model: nn.Module, ctx: InitContext | None = None) -> None:
    apply_to_weights(model, lambda w: nn.init.orthogonal_(w, gain=s.gain))


@INITS.register(
    "trunc_normal",
    settings=TruncNormalSettings,
    summary="truncated normal init (std 0.02, cut at 2 std)",
    paper="An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale "
    "(Dosovitskiy et al., 2021)",
)
def build_trunc_normal(
    s: TruncNormalSettings, model: nn.Module, ctx: InitContext | None = None
) -> None:
    cut = s.truncate_at * s.std
    apply_to_weights(
        model, lambda w: nn.init.trunc_normal_(w, s.mean, s.std, s.mean - cut, s.mean + cut)
    )
