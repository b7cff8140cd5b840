"""`lsuv`: Layer-Sequential Unit-Variance init (Mishkin & Matas, "All you need is a good init",
ICLR 2016).

1. Orthonormal pre-init of every Linear/Conv weight (flattened to (C_out, fan_in)), biases 0.
2. In forward order, for each layer k: forward a batch of training inputs, Var = the variance
   of layer k's output over all its entries; while |Var − 1| ≥ tol and fewer than max_iter
   tries: W_k ← W_k / sqrt(Var), forward again.

The forwards run in eval mode (no dropout noise, no change to running statistics) on the
`InitContext.sample` the loop passes in.
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainlib.components.inits_base import InitContext, InitError, weight_layers
from trainlib.registries import INITS


class LsuvSettings(BaseModel):
    """Defaults from the paper: Tol_var 0.1, T_max 10; orthonormal pre-init on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tol: float = Field(0.1, gt=0, lt=1, description="Tol_var: stop when |Var − 1| < tol")
    max_iter: int = Field(10, ge=1, le=100, description="T_max rescales per layer")
    sample_size: int = Field(256, ge=2, le=4096, description="training inputs in the batch")
    orthogonal_preinit: bool = True


def forward_order(model: nn.Module, batch: torch.Tensor) -> list[nn.Module]:
    """Linear/Conv layers in the order the forward pass first calls them."""
    order: list[nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda mod, _i, _o: order.append(mod) if mod not in order else None)
        for m in weight_layers(model)
    ]
    try:
        model(batch)
    finally:
        for h in hooks:
            h.remove()
    return order


def output_variance(model: nn.Module, layer: nn.Module, batch: torch.Tensor) -> float:
    """Var of `layer`'s output (one scalar over all entries) when `model` runs on `batch`."""
    seen: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    try:
        model(batch)
    finally:
        hook.remove()
    return float(seen[0].float().var())


@torch.no_grad()
def lsuv_(model: nn.Module, batch: torch.Tensor, tol: float, max_iter: int) -> dict[str, int]:
    """Rescale each layer in place; returns each layer's number of rescales (by module name)."""
    names = {m: n for n, m in model.named_modules()}
    was_training = model.training
    model.eval()
    tries: dict[str, int] = {}
    try:
        for layer in forward_order(model, batch):
            weight = layer.weight
            assert isinstance(weight, torch.Tensor)
            count = 0
            var = output_variance(model, layer, batch)
            while abs(var - 1) >= tol and count < max_iter and var > 0 and math.isfinite(var):
                weight.div_(math.sqrt(var))
                count += 1
                var = output_variance(model, layer, batch)
            tries[names[layer]] = count
    finally:
        model.train(was_training)
    return tries


@INITS.register(
    "lsuv",
    settings=LsuvSettings,
    summary="orthonormal init, then each layer rescaled to unit output variance on a data batch",
    paper="All you need is a good init (Mishkin & Matas, 2016)",
)
def build_lsuv(s: LsuvSettings, model: nn.Module, ctx: InitContext | None = None) -> None:
    if ctx is None or ctx.sample is None or len(ctx.sample) < 2:
        raise InitError("lsuv needs a batch of training inputs")
    with torch.no_grad():
        for module in weight_layers(model):
            if s.orthogonal_preinit:
                nn.init.orthogonal_(module.weight)
            if module.bias is not None:
                module.bias.zero_()
    lsuv_(model, ctx.sample[: s.sample_size], s.tol, s.max_iter)
