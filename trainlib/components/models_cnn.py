"""A small pre-activation ResNet for 8x8 to 32x32 images."""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from trainlib.components.blocks import ResidualBlock, ResidualMode, fixup_bias
from trainlib.components.models_common import (
    ModelSettings,
    image_shape,
    make_activation,
    require_per_sample_output,
)
from trainlib.components.norms import NormField, make_norm, norm_field
from trainlib.data import DataInfo
from trainlib.registries import MODELS


class CNNSettings(ModelSettings):
    """Stem conv, then stages of residual blocks (`widths[i]` channels, `blocks[i]` blocks each);
    every stage after the first starts with a stride-2 conv; global average pooling; Linear head.
    """

    widths: list[int] = Field(default_factory=lambda: [32, 64], min_length=1, max_length=8)
    blocks: list[int] = Field(default_factory=lambda: [2, 2], min_length=1, max_length=8)
    norm: NormField = norm_field("batchnorm")

    @model_validator(mode="after")
    def _stages_match(self) -> CNNSettings:
        if len(self.widths) != len(self.blocks):
            raise ValueError("widths and blocks need one entry per stage")
        if not all(1 <= w <= 4096 for w in self.widths) or not all(
            0 <= b <= 64 for b in self.blocks
        ):
            raise ValueError("widths must be in [1, 4096] and blocks in [0, 64]")
        return self


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class CNN(nn.Module):
    """Pre-activation ResNet ("Identity Mappings in Deep Residual Networks", He et al., 2016).

    Each block is x + branch(x) with branch = norm, act, conv3x3, norm, act, dropout, conv3x3,
    so with the branch's last conv at zero (Fixup, ZerO) or a zero gate (ReZero) every block is
    exactly the identity. Downsampling sits between stages (norm, act, stride-2 conv), outside
    the residual blocks, so every block keeps an identity shortcut.
    """

    def __init__(self, s: CNNSettings, info: DataInfo) -> None:
        super().__init__()
        require_per_sample_output(info, "cnn")
        channels, height, width = image_shape(info, "cnn")
        self.input_shape = (channels, height, width)
        self.stem = nn.Conv2d(channels, s.widths[0], 3, padding=1)
        layers: list[nn.Module] = []
        c = s.widths[0]
        for stage, (w, n) in enumerate(zip(s.widths, s.blocks, strict=True)):
            if stage > 0:
                layers += [self._pre(s, c), _conv(c, w, stride=2)]
                c = w
            layers += [self._block(s, w) for _ in range(n)]
        layers += [self._pre(s, c), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(s.dropout)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c, info.num_classes)

    @staticmethod
    def _pre(s: CNNSettings, width: int) -> nn.Sequential:
        return nn.Sequential(make_norm(s.norm, width, "channels"), make_activation(s.activation))

    @staticmethod
    def _block(s: CNNSettings, width: int) -> ResidualBlock:
        mode: ResidualMode = s.residual
        branch = nn.Sequential(
            make_norm(s.norm, width, "channels"),
            fixup_bias(mode), make_activation(s.activation), fixup_bias(mode), _conv(width, width),
            make_norm(s.norm, width, "channels"),
            fixup_bias(mode), make_activation(s.activation), nn.Dropout(s.dropout),
            fixup_bias(mode), _conv(width, width),
        )  # fmt: skip
        return ResidualBlock(branch, mode, s.drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], *self.input_shape)
        out: torch.Tensor = self.head(self.body(self.stem(x)))
        return out


@MODELS.register(
    "cnn",
    settings=CNNSettings,
    summary="small pre-activation ResNet for 8x8 to 32x32 images",
    paper="Identity Mappings in Deep Residual Networks (He et al., 2016)",
)
def build_cnn(s: CNNSettings, info: DataInfo) -> nn.Module:
    return CNN(s, info)
