"""A dry run's figures: parameter count, steps, memory and compute, without training."""

from __future__ import annotations

from typing import Any

import torch

from trainlib.data import DataBundle
from trainlib.registries import DATASETS, MODELS
from trainlib.spec import JobSpec, total_steps

# Adam-style optimizers keep two state tensors per parameter; SGD with momentum one.
_STATE_TENSORS = {"sgd": 1, "adam": 2, "adamw": 2}


def estimate(spec: JobSpec) -> dict[str, Any]:
    data: DataBundle = DATASETS.build(spec.data, seed=spec.seed)
    with torch.device("meta"):
        model = MODELS.build(spec.model, data.info)
    params = sum(p.numel() for p in model.parameters())
    steps = total_steps(spec, data.steps_per_epoch)
    state = _STATE_TENSORS.get(spec.optimizer.name, 2)
    bytes_per = 4  # fp32
    weights_grads_state = params * bytes_per * (2 + state)
    # Forward and backward cost about 6 FLOPs per parameter per example for dense layers.
    flops = 6 * params * data.batch_size * steps
    return {
        "parameters": params,
        "total_steps": steps,
        "train_examples": len(data.train_x),
        "val_examples": len(data.val_x),
        "estimated_memory_bytes": weights_grads_state,
        "estimated_flops": flops,
    }
