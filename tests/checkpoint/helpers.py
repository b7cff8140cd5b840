"""Shared pieces of the checkpoint tests: a small job, a sink that stops, and the two runs (whole,
and stopped then resumed by a fresh `train()` call) whose results must be bit-identical."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from trainlib import CollectingSink, parse_spec, train
from trainlib.checkpoint import state_path
from trainlib.spec import JobSpec

CPU = torch.device("cpu")
DIGITS = {"name": "digits", "batch_size": 256}


def job(
    *,
    optimizer: dict[str, Any] | None = None,
    regularizers: list[dict[str, Any]] | None = None,
    model: dict[str, Any] | None = None,
    loss: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    steps: int = 8,
    **train_settings: Any,
) -> JobSpec:
    """Digits in batches of 256 (6 steps an epoch, so 8 steps reshuffle once) and a small MLP;
    `data` with a name replaces the digits, without one it changes their settings."""
    raw: dict[str, Any] = {
        "name": "resume",
        "seed": 3,
        "data": data if data and "name" in data else {**DIGITS, **(data or {})},
        "model": model or {"name": "mlp", "hidden": [16]},
        "optimizer": optimizer or {"name": "adamw", "lr": 3e-3},
        "regularizers": regularizers or [],
        "train": {
            "steps": steps,
            "log_every": 2,
            "eval_every": 4,
            "checkpoint_every": 4,
            "device": "cpu",
            **train_settings,
        },
    }
    if loss is not None:
        raw["loss"] = loss
    return parse_spec(raw)


class StopAfter(CollectingSink):
    """Lets `n` steps run, then asks to stop (the loop asks once before every step)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.calls = 0

    def should_stop(self) -> bool:
        self.calls += 1
        return self.calls > self.n


@dataclass
class Run:
    metrics: list[tuple[int, str, float]]
    weights: dict[str, torch.Tensor]  # checkpoint.safetensors (evaluation weights)
    state: dict[str, torch.Tensor]  # the final full state's tensors
    final_metrics: dict[str, float]


def _finished(sinks: list[CollectingSink], out: Path, final_metrics: dict[str, float]) -> Run:
    metrics = [(m.step, m.name, m.value) for sink in sinks for m in sink.metrics]
    states = sorted(out.glob("state-*.safetensors"))
    return Run(
        metrics,
        load_file(str(out / "checkpoint.safetensors")),
        load_file(str(states[-1])),
        final_metrics,
    )


def run_whole(spec: JobSpec, out: Path, **options: Any) -> Run:
    sink = CollectingSink()
    result = train(spec, sink, out_dir=out, device=CPU, **options)
    assert result.status == "completed"
    return _finished([sink], out, result.final_metrics)


def scramble_global_rngs() -> None:
    """What another process would start from: the resumed run must not depend on it."""
    torch.manual_seed(987654)
    random.seed(987654)
    np.random.seed(98765)


def run_resumed(spec: JobSpec, out: Path, stops: Sequence[int], **options: Any) -> Run:
    """Stop after each step count in `stops`, each time continuing from the stop's full state in
    a new train() call (global RNGs scrambled in between), then run to the end."""
    sinks: list[CollectingSink] = []
    state: Path | None = None
    done = 0
    for stop_at in [*stops, spec.train.steps]:
        sink = StopAfter(stop_at - done)
        result = train(spec, sink, out_dir=out, device=CPU, resume_from=state, **options)
        assert result.step == stop_at and all(done < m.step <= stop_at for m in sink.metrics)
        assert result.state == state_path(out, stop_at) and sink.checkpoints[-1][1] == result.state
        sinks.append(sink)
        state, done = result.state, stop_at
        scramble_global_rngs()
    assert result.status == "completed"
    return _finished(sinks, out, result.final_metrics)


def assert_same_tensors(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> None:
    assert expected.keys() == got.keys() and expected
    for key, value in expected.items():
        assert value.dtype == got[key].dtype, key
        assert torch.equal(value, got[key]), key


def assert_resume_is_bit_identical(
    spec: JobSpec, tmp_path: Path, stop_at: int | Sequence[int] = 3, **options: Any
) -> Run:
    """Weights, the full final state and every metric equal the uninterrupted run's.

    `options` go to every train() call (resolve_job for a distillation teacher)."""
    whole = run_whole(spec, tmp_path / "whole", **options)
    stops = [stop_at] if isinstance(stop_at, int) else list(stop_at)
    resumed = run_resumed(spec, tmp_path / "resumed", stops, **options)
    assert resumed.metrics == whole.metrics
    assert resumed.final_metrics == whole.final_metrics
    assert_same_tensors(whole.weights, resumed.weights)
    assert_same_tensors(whole.state, resumed.state)
    return whole
