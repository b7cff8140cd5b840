"""`mup`: the Maximal Update Parametrization's init and per-layer learning rates (Yang et al.,
"Tensor Programs V: Tuning Large Neural Networks via Zero-Shot Hyperparameter Transfer", 2022).

With width_mult = (the head's fan-in) / base_width, the paper's table in the abc form that needs
no change to the forward pass:

| parameters                  | init std                         | Adam lr | SGD lr |
| input (stem), biases, norms | σ/sqrt(fan_in) (norms untouched) | η       | η·w    |
| hidden weights              | σ/sqrt(fan_in)                   | η/w     | η      |
| output (head) weight        | σ/sqrt(fan_in·w) (or 0)          | η/w     | η/w    |

(w = width_mult.)

At width_mult = 1 this is the standard parametrization. Weight decay is divided by the lr
multiplier (as MuAdam and MuSGD do), so lr·λ stays fixed per parameter. Every hidden width is
assumed to scale with the head's fan-in. An embedding stem keeps its own N(0, 1) init (input
weights: constant in width); with tied embeddings the shared matrix follows the readout rule.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainlib.components.inits_base import (
    InitContext,
    InitResult,
    ParamScale,
    head_of,
    stem_of,
    weight_layers,
    weight_of,
)
from trainlib.registries import INITS


class MupSettings(BaseModel):
    """μP relative to a base model of width `base_width`, where hyperparameters were tuned."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_width: int = Field(..., ge=1, le=1_000_000, description="width at which μP equals SP")
    optimizer: Literal["adam", "sgd"] = Field(
        "adam", description="which lr table: Adam-type (adaptive) or SGD-type"
    )
    std: float = Field(1.0, gt=0, le=10, description="σ: weights ~ N(0, σ²/fan_in)")
    zero_readout: bool = Field(False, description="start the head at 0 (the paper's option)")
    scale_weight_decay: bool = Field(True, description="keep lr·weight_decay fixed per param")


def _fan_in(weight: torch.Tensor) -> int:
    return int(weight[0].numel())


def _role(layer: nn.Module, stem: nn.Module, head: nn.Module) -> str:
    if layer is head:
        return "output"
    return "input" if layer is stem else "hidden"


def lr_multipliers(s: MupSettings, width_mult: float) -> dict[str, float]:
    """Each role's lr multiplier (biases and other vector-like parameters: 'vector')."""
    if s.optimizer == "adam":
        return {"input": 1.0, "vector": 1.0, "hidden": 1 / width_mult, "output": 1 / width_mult}
    return {"input": width_mult, "vector": width_mult, "hidden": 1.0, "output": 1 / width_mult}


@INITS.register(
    "mup",
    settings=MupSettings,
    summary="μP: init std and per-layer lr scaled by width / base_width",
    paper="Tensor Programs V: Tuning Large Neural Networks via Zero-Shot Hyperparameter "
    "Transfer (Yang et al., 2022)",
)
def build_mup(s: MupSettings, model: nn.Module, ctx: InitContext | None = None) -> InitResult:
    stem, head = stem_of(model), head_of(model)
    width_mult = head.in_features / s.base_width
    mults = lr_multipliers(s, width_mult)
    scales: list[ParamScale] = []

    def scale(param: torch.Tensor, lr: float) -> None:
        if lr != 1.0:
            scales.append(ParamScale(param, lr, 1 / lr if s.scale_weight_decay else 1.0))

    with torch.no_grad():
        for layer in weight_layers(model):
            weight = weight_of(layer)
            role = _role(layer, stem, head)
            std = s.std / math.sqrt(_fan_in(weight))
            if role == "output":
                std /= math.sqrt(width_mult)
            if role == "output" and s.zero_readout:
                weight.zero_()
            else:
                weight.normal_(0.0, std)
            scale(weight, mults[role])
        stem_weight = weight_of(stem)
        tied = stem_weight is weight_of(head)  # tied embeddings: the readout rule governs
        if not isinstance(stem, nn.Linear | nn.Conv1d | nn.Conv2d) and not tied:
            scale(stem_weight, mults["input"])  # an embedding stem keeps its own init
        for layer in weight_layers(model):
            bias = getattr(layer, "bias", None)
            if isinstance(bias, torch.Tensor):
                bias.zero_()
    # every other vector-like parameter (biases, norm gains, gates) moves at the vector lr
    matrices = {id(p) for p in (weight_of(m) for m in weight_layers(model))} | {id(stem_weight)}
    for param in model.parameters():
        if id(param) not in matrices:
            scale(param, mults["vector"])
    return InitResult(tuple(scales))
