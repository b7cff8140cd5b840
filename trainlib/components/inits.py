"""Weight initializations, applied in place to a built model (biases are zeroed)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainlib.registries import INITS


class DefaultSettings(BaseModel):
    """Keep torch's default initialization of each layer."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    gain: float = Field(1.0, gt=0, le=100)


def _apply(model: nn.Module, fn: Callable[[torch.Tensor], object]) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
                fn(module.weight)
                if module.bias is not None:
                    module.bias.zero_()


@INITS.register("default", settings=DefaultSettings, summary="torch's default init of each layer")
def build_default(s: DefaultSettings, model: nn.Module) -> None:
    return None


@INITS.register(
    "kaiming_normal",
    settings=DefaultSettings,
    summary="He normal init (fan_in, ReLU gain)",
    paper="Delving Deep into Rectifiers (He et al., 2015)",
)
def build_kaiming_normal(s: DefaultSettings, model: nn.Module) -> None:
    _apply(model, lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"))


@INITS.register(
    "xavier_uniform",
    settings=GainSettings,
    summary="Glorot uniform init",
    paper="Understanding the difficulty of training deep feedforward neural networks "
    "(Glorot & Bengio, 2010)",
)
def build_xavier_uniform(s: GainSettings, model: nn.Module) -> None:
    _apply(model, lambda w: nn.init.xavier_uniform_(w, gain=s.gain))


@INITS.register(
    "orthogonal",
    settings=GainSettings,
    summary="orthogonal weight matrices",
    paper="Exact solutions to the nonlinear dynamics of learning in deep linear neural networks "
    "(Saxe et al., 2014)",
)
def build_orthogonal(s: GainSettings, model: nn.Module) -> None:
    _apply(model, lambda w: nn.init.orthogonal_(w, gain=s.gain))
