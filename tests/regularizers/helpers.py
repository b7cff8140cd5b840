"""Shared pieces of the regularizer tests: the minimal job, settings errors, a real tiny run, and
the bit-identical resume of a small model trained through a regularizer stack."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainlib import Sink, SpecError, TrainResult, parse_spec, train
from trainlib.data import DataInfo
from trainlib.registries import REGULARIZERS
from trainlib.regularizers import RegularizerStack, SetupContext
from trainlib.step import train_step

# A small classification problem over 12 steps, for the averaging and step-strategy tests.
N, FEATURES, CLASSES, BATCH = 48, 6, 3, 16
SMALL_SETUP = SetupContext(
    info=DataInfo((FEATURES,), CLASSES),
    total_steps=12,
    steps_per_epoch=N // BATCH,
    batch_size=BATCH,
    train_size=N,
    seed=0,
)

Parts = tuple[nn.Module, RegularizerStack, torch.optim.Optimizer]
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def minimal_job(
    regs: list[dict[str, Any]],
    *,
    data: dict[str, Any] | None = None,
    optimizer: dict[str, Any] | None = None,
    hidden: list[int] | None = None,
    steps: int = 40,
    eval_every: int | None = None,
) -> dict[str, Any]:
    """Digits, a 32-unit MLP and AdamW on the CPU, with the given regularizers."""
    return {
        "data": {"name": "digits", "batch_size": 64, **(data or {})},
        "model": {"name": "mlp", "hidden": hidden or [32]},
        "optimizer": optimizer or {"name": "adamw", "lr": 3e-3},
        "regularizers": regs,
        "train": {
            "steps": steps,
            "log_every": 10,
            "eval_every": eval_every or steps,
            "device": "cpu",
        },
    }


def spec_error_paths(raw: dict[str, Any]) -> list[str]:
    """The paths a SpecError names for this raw job (it must be rejected)."""
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    return [e["path"] for e in info.value.errors]


def assert_bad_setting(reg: dict[str, Any], path: str) -> None:
    """A regularizer with a bad setting is rejected naming exactly that one field."""
    assert spec_error_paths(minimal_job([reg])) == [path]


def train_minimal_job(
    regs: list[dict[str, Any]], sink: Sink | None = None, **job: Any
) -> TrainResult:
    """The minimal job through trainlib.train: it completes all its steps with a finite loss."""
    raw = minimal_job(regs, **job)
    result = train(parse_spec(raw), sink, device=torch.device("cpu"))
    assert result.status == "completed" and result.step == raw["train"]["steps"]
    assert math.isfinite(result.final_metrics["loss"])
    return result


def fresh_parts(raws: list[dict[str, Any]], setup: SetupContext, seed: int) -> Parts:
    """A 12-16-4 MLP (initialised from `seed`), its regularizer stack and AdamW."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))
    stack = RegularizerStack.build([REGULARIZERS.settings_for(r) for r in raws], setup)
    stack.configure_model(model)
    return model, stack, torch.optim.AdamW(model.parameters(), lr=1e-2)


def run_parts(parts: Parts, batches: list[Batch], steps: range) -> None:
    """Train on `batches[step]` for each step, with every hook of the stack."""
    model, stack, opt = parts
    for step in steps:
        x, y, idx = batches[step]
        x, y = stack.transform_batch(x, y, idx, step)
        train_step(model, opt, x, y, stack.loss_closure(F.cross_entropy, model, x, idx, step))
        stack.after_step(model, opt, step)


def sequential_batches(count: int = 10, seed: int = 5) -> list[Batch]:
    """`count` batches of 8 random 12-feature samples over 4 classes, indices 0, 1, 2, …"""
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(8, 12, generator=g),
            torch.randint(0, 4, (8,), generator=g),
            torch.arange(8) + 8 * i,
        )
        for i in range(count)
    ]


def roundtrip(obj: Any) -> Any:
    """`obj` through torch.save and torch.load (weights only), as a checkpoint carries it."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_resumes_bit_identically(
    raws: list[dict[str, Any]], setup: SetupContext, batches: list[Batch], stop_at: int
) -> tuple[Parts, Parts]:
    """Stop at `stop_at`, save model, optimizer and stack through torch.save, rebuild from another
    initialisation, continue: the weights equal the uninterrupted run's. Returns both runs."""
    total = len(batches)
    whole = fresh_parts(raws, setup, 0)
    run_parts(whole, batches, range(total))

    first = fresh_parts(raws, setup, 0)
    run_parts(first, batches, range(stop_at))
    state = {"model": first[0].state_dict(), "opt": first[2].state_dict()}
    saved = roundtrip({**state, "reg": first[1].state_dict()})
    resumed = fresh_parts(raws, setup, 1)  # another init: everything must come from the state
    resumed[0].load_state_dict(saved["model"])
    resumed[2].load_state_dict(saved["opt"])
    resumed[1].load_state_dict(saved["reg"])
    run_parts(resumed, batches, range(stop_at, total))

    expected, got = whole[0].state_dict(), resumed[0].state_dict()
    assert expected.keys() == got.keys()
    for name, value in expected.items():
        assert torch.equal(value, got[name]), name
    return whole, resumed
