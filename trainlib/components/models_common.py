"""What every model shares: activations, the common settings, and the input checks."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainlib.components.blocks import ResidualMode
from trainlib.components.norms import NormField, norm_field
from trainlib.data import DataInfo

Activation = Literal["relu", "gelu", "silu", "tanh"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}

Probability = Annotated[float, Field(ge=0, lt=1)]


def make_activation(name: Activation) -> nn.Module:
    return _ACTIVATIONS[name]()


class ModelSettings(BaseModel):
    """Settings every model takes.

    norm: a norm name or {"name": ..., settings} from the norm registry.
    drop_path: stochastic-depth probability of each residual branch.
    residual: plain, rezero (scalar gate from 0) or fixup (scalar multiplier and biases).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    activation: Activation = "relu"
    norm: NormField = norm_field("none")
    dropout: Probability = 0.0
    drop_path: Probability = 0.0
    residual: ResidualMode = "plain"


def image_shape(info: DataInfo, model: str) -> tuple[int, int, int]:
    """(C, H, W) of the inputs; a flat input of a square length is read as one channel."""
    if info.vocab_size is not None:
        raise ValueError(f"{model} takes real-valued images, not token ids")
    shape = info.input_shape
    if len(shape) == 3:
        return shape[0], shape[1], shape[2]
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    side = math.isqrt(math.prod(shape))
    if side * side != math.prod(shape):
        raise ValueError(f"{model} needs (C, H, W) images; got input shape {shape}")
    return 1, side, side


def require_per_sample_output(info: DataInfo, model: str) -> None:
    if info.task == "sequence":
        raise ValueError(f"{model} gives one output per sample; sequence tasks need a transformer")
