"""Parameter groups: no weight decay on biases and norms, lr multipliers, layer-wise lr decay.

Each group carries `names` (its parameters' names), `lr_scale` (its multiplier, already applied to
`lr`, so any torch LR scheduler keeps it) and `final_layer` (AGC skips the classifier).
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn

from trainlib.optim.base import GroupSettings, ParamGroups

Named = list[tuple[str, torch.Tensor]]


def _is_norm(module: nn.Module) -> bool:
    return "Norm" in type(module).__name__


def _layers(model: nn.Module) -> tuple[Named, dict[str, int], set[str], set[str]]:
    """Parameters in order; each one's layer index, the norm parameters, the final layer's."""
    named: Named = []
    layer_of: dict[str, int] = {}
    norm_names: set[str] = set()
    layer = -1
    last_layer_names: list[str] = []
    for module_name, module in model.named_modules():
        direct = [(n, p) for n, p in module.named_parameters(recurse=False) if p.requires_grad]
        if not direct:
            continue
        layer += 1
        last_layer_names = []
        for n, p in direct:
            full = f"{module_name}.{n}" if module_name else n
            named.append((full, p))
            layer_of[full] = layer
            last_layer_names.append(full)
            if _is_norm(module):
                norm_names.add(full)
    return named, layer_of, norm_names, set(last_layer_names)


def build_param_groups(
    params: nn.Module | Iterable[Any], settings: GroupSettings, lr: float, weight_decay: float
) -> ParamGroups:
    """Split parameters into groups. Given a module, names and layer structure are known."""
    if isinstance(params, nn.Module):
        named, layer_of, norm_names, final = _layers(params)
    else:
        items = list(params)
        if items and isinstance(items[0], dict):
            return [dict(group) for group in items]  # the caller's own groups, as they are
        if items and isinstance(items[0], tuple):
            named = [(str(n), p) for n, p in items]
        else:
            named = [(f"param{i}", p) for i, p in enumerate(items)]
        layer_of = {n: i for i, (n, _) in enumerate(named)}
        norm_names, final = set(), set()
    n_layers = max(layer_of.values(), default=-1) + 1

    groups: dict[tuple[bool, float, bool], dict[str, Any]] = {}
    for name, p in named:
        decay = weight_decay > 0 and not _no_decay(name, p, settings.no_decay, norm_names)
        scale = 1.0
        for pattern, mult in settings.lr_multipliers.items():
            if fnmatchcase(name, pattern):
                scale *= mult
        if settings.layer_decay is not None:
            scale *= settings.layer_decay ** (n_layers - 1 - layer_of[name])
        key = (decay, scale, name in final)
        if key not in groups:
            groups[key] = {
                "params": [],
                "names": [],
                "lr": lr * scale,
                "lr_scale": scale,
                "weight_decay": weight_decay if decay else 0.0,
                "final_layer": name in final,
            }
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return list(groups.values())


def _no_decay(name: str, p: torch.Tensor, rules: list[str], norm_names: set[str]) -> bool:
    for rule in rules:
        if rule == "bias" and (p.ndim <= 1 and name not in norm_names):
            return True
        if rule == "norm" and name in norm_names:
            return True
        if rule not in ("bias", "norm") and fnmatchcase(name, rule):
            return True
    return False
