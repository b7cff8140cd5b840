"""What an init gets (InitContext) and gives back (InitResult), and the model structure it reads.

Models follow the residual contract of `trainlib/components/blocks.py`: residual blocks expose
`branch_layers()` (the branch's Linear/Conv layers, first to last), and models expose `stem`
(input layer) and `head` (final Linear). Both are read by duck typing, with fallbacks (first
weight layer, last Linear) for models that predate the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from torch import nn

from trainlib.data import DataBundle
from trainlib.errors import DataError
from trainlib.registries import INITS

ParamGroups = list[dict[str, Any]]
GroupAdjust = Callable[[ParamGroups], ParamGroups]
Resolver = Callable[[str], tuple[dict[str, Any], Path]]
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
SAMPLE_ROWS = 1024  # training inputs handed to data-dependent inits (LSUV)


class InitError(DataError):
    """The init cannot be applied to this model or job (a problem with the job's inputs)."""


@dataclass(frozen=True)
class InitContext:
    """`sample`: training inputs on the model's device (LSUV); `resolve_job`: another job of the
    team -> (resolved spec, checkpoint) (weight_selection); local runs have none."""

    sample: torch.Tensor | None = None
    resolve_job: Resolver | None = None

    @classmethod
    def from_data(cls, data: DataBundle, resolve_job: Resolver | None = None) -> InitContext:
        # the model is still on the CPU when the init runs
        return cls(data.train_x[:SAMPLE_ROWS].cpu(), resolve_job)


@dataclass(frozen=True)
class ParamScale:
    """Per-parameter multipliers of the optimizer's lr and weight decay (μP, Fixup's scalars)."""

    param: torch.Tensor
    lr: float
    weight_decay: float = 1.0


@dataclass(frozen=True)
class InitResult:
    """What the init asks of the optimizer: per-parameter multipliers (by identity, so names
    changed by later parametrizations do not matter)."""

    scales: Sequence[ParamScale] = field(default_factory=tuple)

    def after(self, first: GroupAdjust | None = None) -> GroupAdjust:
        """`first` (the regularizers' adjustment), then this init's split of the groups."""

        def adjust(groups: ParamGroups) -> ParamGroups:
            if first is not None:
                groups = first(groups)
            return split_groups(groups, self.scales) if self.scales else groups

        return adjust


def split_groups(groups: ParamGroups, scales: Sequence[ParamScale]) -> ParamGroups:
    """Split each group by multiplier; lr and `lr_scale` times the lr multiplier, weight decay
    times its own (so torch schedulers, which scale groups relatively, keep them)."""
    by_id = {id(s.param): (s.lr, s.weight_decay) for s in scales}
    out: ParamGroups = []
    for group in groups:
        names = group.get("names") or [None] * len(group["params"])
        # the unscaled bucket first, so group 0 (the loop's logged lr) keeps the spec's lr
        buckets: dict[tuple[float, float], dict[str, Any]] = {}
        buckets[(1.0, 1.0)] = {**group, "params": [], "names": []}
        for name, p in zip(names, group["params"], strict=True):
            key = by_id.get(id(p), (1.0, 1.0))
            if key not in buckets:
                bucket = {**group, "params": [], "names": [], "lr": group["lr"] * key[0]}
                bucket["lr_scale"] = group.get("lr_scale", 1.0) * key[0]
                if "weight_decay" in group:
                    bucket["weight_decay"] = group["weight_decay"] * key[1]
                buckets[key] = bucket
            buckets[key]["params"].append(p)
            buckets[key]["names"].append(name)
        for bucket in buckets.values():
            if "names" not in group:
                del bucket["names"]
        out.extend(b for b in buckets.values() if b["params"])
    return out


def apply_init(spec: BaseModel | dict[str, Any], model: nn.Module, ctx: InitContext) -> InitResult:
    """Run the registered init on `model` in place; what it asks of the optimizer."""
    result = INITS.build(spec, model, ctx)
    return result if isinstance(result, InitResult) else InitResult()


WeightLayer = nn.Linear | nn.Conv1d | nn.Conv2d


def weight_layers(model: nn.Module) -> list[WeightLayer]:
    return [m for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]


def residual_blocks(model: nn.Module) -> list[nn.Module]:
    """Modules following the ResidualBlock contract (a `branch_layers()` method)."""
    return [m for m in model.modules() if callable(getattr(m, "branch_layers", None))]


def branch_layers(block: nn.Module) -> list[nn.Module]:
    layers: list[nn.Module] = block.branch_layers()  # type: ignore[operator]
    return layers


def stem_of(model: nn.Module) -> nn.Module:
    stem = getattr(model, "stem", None)
    if isinstance(stem, nn.Module) and _weight(stem) is not None:
        return stem
    layers = weight_layers(model)
    if not layers:
        raise InitError(f"{type(model).__name__} has no Linear or Conv layer to initialize")
    return layers[0]


def head_of(model: nn.Module) -> nn.Linear:
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InitError(f"{type(model).__name__} has no final Linear layer")
    return linears[-1]


def _weight(module: nn.Module) -> torch.Tensor | None:
    w = getattr(module, "weight", None)
    return w if isinstance(w, torch.Tensor) else None


def weight_of(module: nn.Module) -> torch.Tensor:
    w = _weight(module)
    if w is None:
        raise InitError(f"{type(module).__name__} has no weight")
    return w


def zero_layer(module: nn.Module) -> None:
    with torch.no_grad():
        weight_of(module).zero_()
        bias = getattr(module, "bias", None)
        if isinstance(bias, torch.Tensor):
            bias.zero_()
