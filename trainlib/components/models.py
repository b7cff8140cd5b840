"""The multi-layer perceptron (the CNN and transformer live in models_cnn / models_transformer)."""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from trainlib.components.blocks import ResidualBlock, ResidualMode, fixup_bias
from trainlib.components.models_common import (
    ModelSettings,
    make_activation,
    require_per_sample_output,
)
from trainlib.components.norms import make_norm
from trainlib.data import DataInfo
from trainlib.registries import MODELS


class MLPSettings(ModelSettings):
    """Fully connected: [Linear, norm, activation, dropout] x len(hidden), then Linear.

    `residual` (off by default) turns each hidden layer whose width equals the previous one
    into a residual block. Token inputs (a data set with a vocabulary) are one-hot encoded, or
    embedded with `embed_dim` features per token, then flattened.
    """

    hidden: list[Annotated[int, Field(ge=1, le=65536)]] = Field(
        default_factory=lambda: [256, 256], max_length=64
    )
    residual: ResidualMode | None = None  # type: ignore[assignment]
    embed_dim: int | None = Field(None, ge=1, le=4096)


class TokenInput(nn.Module):
    """One-hot encodes (B, T) token ids into (B, T, vocab) floats."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.one_hot(x.long(), self.vocab_size).float()


class MLP(nn.Module):
    def __init__(self, s: MLPSettings, info: DataInfo) -> None:
        super().__init__()
        require_per_sample_output(info, "mlp")
        width = math.prod(info.input_shape)
        self.encode: nn.Module = nn.Identity()
        if info.vocab_size is not None and s.embed_dim is not None:
            self.encode = nn.Embedding(info.vocab_size, s.embed_dim)
            width *= s.embed_dim
        elif info.vocab_size is not None:
            self.encode = TokenInput(info.vocab_size)
            width *= info.vocab_size
        layers: list[nn.Module] = []
        for i, hidden in enumerate(s.hidden):
            residual = s.residual is not None and i > 0 and hidden == width
            bias = fixup_bias(s.residual) if residual else nn.Identity()
            layer = [nn.Linear(width, hidden), bias, make_norm(s.norm, hidden, "features")]
            layer += [make_activation(s.activation), nn.Dropout(s.dropout)]
            if residual and s.residual is not None:
                branch = nn.Sequential(fixup_bias(s.residual), *layer)
                layers.append(ResidualBlock(branch, s.residual, s.drop_path))
            else:
                layers += layer
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, info.num_classes)

    @property
    def stem(self) -> nn.Module:
        """The input layer: the token embedding, else the first Linear."""
        if isinstance(self.encode, nn.Embedding):
            return self.encode
        return next(m for m in self.modules() if isinstance(m, nn.Linear))

    def flow(self) -> list[nn.Module]:
        """The layers in the order data passes through them (for per-unit regularizers)."""
        return [*self.body, self.head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encode(x).flatten(1)
        out: torch.Tensor = self.head(self.body(features))
        return out


@MODELS.register("mlp", settings=MLPSettings, summary="multi-layer perceptron")
def build_mlp(s: MLPSettings, info: DataInfo) -> nn.Module:
    return MLP(s, info)
