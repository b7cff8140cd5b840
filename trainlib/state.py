"""Training state as safetensors can hold it: flat tensors plus a JSON skeleton, and global RNGs.

A full-state checkpoint nests dicts (optimizer state keyed by parameter index, regularizer states),
lists, tuples, tensors and plain numbers. safetensors stores only named tensors and string
metadata, so `flatten` splits the state into `{dotted.key: tensor}` and a JSON skeleton that keeps
every non-tensor leaf (int, float, str, bool, None) and the containers' shapes; `unflatten`
rebuilds the same structure. Nothing is pickled: loading a checkpoint cannot run code.
"""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import torch

Json = Any  # a JSON value: the skeleton's nodes

_TENSOR, _DICT, _TUPLE = "__tensor__", "__dict__", "__tuple__"


def flatten(state: Any) -> tuple[dict[str, torch.Tensor], str]:
    """`state` as (tensors by dotted path, JSON skeleton); raises TypeError on other leaves.

    Dicts are stored as [key, value] pairs, so int keys (optimizer state) stay ints; tuples stay
    tuples (betas). Floats keep every bit: JSON writes Python's shortest round-trip repr.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Json:
        if isinstance(node, torch.Tensor):
            key = path
            while key in tensors:  # a dotted path may repeat ("a.b" vs a -> b): keep both
                key += "_"
            tensors[key] = node
            return {_TENSOR: key}
        if isinstance(node, dict):
            pairs = []
            for k, v in node.items():
                if not isinstance(k, str | int) or isinstance(k, bool):
                    raise TypeError(f"state key {k!r} at {path or '<root>'} is not a str or int")
                pairs.append([k, walk(v, f"{path}.{k}" if path else str(k))])
            return {_DICT: pairs}
        if isinstance(node, tuple):
            return {_TUPLE: [walk(v, f"{path}.{i}") for i, v in enumerate(node)]}
        if isinstance(node, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(node)]
        if node is None or isinstance(node, bool | int | float | str):
            return node
        raise TypeError(f"cannot store {type(node).__name__} at {path or '<root>'} in a checkpoint")

    skeleton = walk(state, "")
    return tensors, json.dumps(skeleton, separators=(",", ":"))


def unflatten(tensors: dict[str, torch.Tensor], skeleton: str) -> Any:
    """The nested state that `flatten` split; every tensor the skeleton names must be present."""

    def build(node: Json) -> Any:
        if isinstance(node, list):
            return [build(v) for v in node]
        if isinstance(node, dict):
            if _TENSOR in node:
                key = node[_TENSOR]
                if key not in tensors:
                    raise ValueError(f"checkpoint lacks the tensor {key!r} its skeleton names")
                return tensors[key]
            if _TUPLE in node:
                return tuple(build(v) for v in node[_TUPLE])
            return {k: build(v) for k, v in node[_DICT]}
        return node

    return build(json.loads(skeleton))


def rng_state() -> dict[str, Any]:
    """Every global generator a step may draw from: torch (CPU, CUDA), Python, NumPy."""
    legacy = np.random.get_state(legacy=True)
    assert isinstance(legacy, tuple)  # legacy=True: always the MT19937 tuple
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = legacy
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {
            "version": py_version,
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
        "numpy": {
            "kind": np_kind,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured (CUDA only when this process has as many devices)."""
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"]), py["gauss_next"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """`optimizer.load_state_dict`, keeping integer state tensors integer.

    torch casts every state tensor but `step` to its parameter's dtype on load, so an int64
    counter (FRUGAL's refresh count) would come back float32: restored here as it was saved.
    """
    optimizer.load_state_dict(saved)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, entries in saved["state"].items():
        if not isinstance(index, int) or not isinstance(entries, dict):
            continue  # an optimizer's shared (not per-parameter) state is loaded as it was
        mine = optimizer.state[params[index]]
        for key, value in entries.items():
            if isinstance(value, torch.Tensor) and not value.is_floating_point():
                mine[key] = value.to(params[index].device)
