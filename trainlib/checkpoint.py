"""Checkpoints in safetensors (never pickle), written under a temporary name and renamed."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def save_weights(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # safetensors refuses shared or non-contiguous storage: store independent copies.
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    save_file(plain, str(tmp), metadata=metadata)
    os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new, never half
    return path


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))
