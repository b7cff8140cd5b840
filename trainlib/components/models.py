"""Models, built from a settings object and the data set's shape."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainlib.data import DataInfo
from trainlib.registries import MODELS

Activation = Literal["relu", "gelu", "silu", "tanh"]
Norm = Literal["none", "layernorm", "batchnorm", "rmsnorm"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def make_norm(norm: Norm, width: int) -> nn.Module:
    if norm == "layernorm":
        return nn.LayerNorm(width)
    if norm == "batchnorm":
        return nn.BatchNorm1d(width)
    if norm == "rmsnorm":
        return nn.RMSNorm(width)
    return nn.Identity()


class MLPSettings(BaseModel):
    """Fully connected: [Linear, norm, activation, dropout] x len(hidden), then Linear."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden: list[Annotated[int, Field(ge=1, le=65536)]] = Field(
        default_factory=lambda: [256, 256], max_length=64
    )
    activation: Activation = "relu"
    norm: Norm = "none"
    dropout: float = Field(0.0, ge=0, lt=1)


class MLP(nn.Module):
    def __init__(self, s: MLPSettings, info: DataInfo) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(info.input_shape)
        for hidden in s.hidden:
            layers += [nn.Linear(width, hidden), make_norm(s.norm, hidden)]
            layers += [_ACTIVATIONS[s.activation](), nn.Dropout(s.dropout)]
            width = hidden
        layers.append(nn.Linear(width, info.num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


@MODELS.register("mlp", settings=MLPSettings, summary="multi-layer perceptron")
def build_mlp(s: MLPSettings, info: DataInfo) -> nn.Module:
    return MLP(s, info)
