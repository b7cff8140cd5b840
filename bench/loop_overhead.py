"""Loop overhead: trainlib's loop against a bare hand-written torch loop, same work, side by side.

Both train the same MLP on the same digits tensors with the same AdamW for the same steps; ours adds
the registries, the schedule, metric batching and the sink. Runs alternate (A, B, A, B, ...) so
drift on a shared machine hits both; the figure is the ratio of medians.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from trainlib.data import BatchOrder
from trainlib.loop import train
from trainlib.optim.build import build_optimizer
from trainlib.registries import DATASETS, LOSSES, MODELS
from trainlib.sink import NullSink
from trainlib.spec import parse_spec

STEPS = 400


def spec_dict(hidden: list[int]) -> dict[str, object]:
    return {
        "data": {"name": "digits", "batch_size": 64},
        "model": {"name": "mlp", "hidden": hidden},
        "optimizer": {"name": "adamw", "lr": 1e-3},
        "schedule": {"name": "cosine", "warmup_steps": 20},
        "train": {"steps": STEPS, "log_every": 20, "eval_every": STEPS, "device": "cpu"},
    }


def ours(raw: dict[str, object]) -> float:
    spec = parse_spec(raw)
    start = time.perf_counter()
    train(spec, NullSink())
    return time.perf_counter() - start


def bare(raw: dict[str, object]) -> float:
    spec = parse_spec(raw)
    torch.manual_seed(spec.seed)
    data = DATASETS.build(spec.data, seed=spec.seed)
    model: nn.Module = MODELS.build(spec.model, data.info)
    optimizer = build_optimizer(spec.optimizer, model.parameters())
    loss_fn = LOSSES.build(spec.loss)
    batches = BatchOrder(len(data.train_x), data.batch_size, seed=1).batches(data)
    start = time.perf_counter()
    for _ in range(STEPS):
        x, y, _ = next(batches)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    # the bare loop does no evaluation: charge it one pass over the validation set, as ours does
    with torch.no_grad():
        model(data.val_x).argmax(-1)
    return time.perf_counter() - start


def run(repeats: int = 5) -> list[dict[str, object]]:
    torch.set_num_threads(1)  # stable on a shared 2-core machine
    rows = []
    for hidden in ([64], [256, 256], [1024, 1024]):
        raw = spec_dict(hidden)
        ours(raw), bare(raw)  # warm up both
        a, b = [], []
        for _ in range(repeats):
            a.append(ours(raw))
            b.append(bare(raw))
        ratio = statistics.median(a) / statistics.median(b)
        rows.append(
            {
                "model": f"mlp {hidden}",
                "ours_ms_per_step": 1000 * statistics.median(a) / STEPS,
                "bare_ms_per_step": 1000 * statistics.median(b) / STEPS,
                "ratio": ratio,
            }
        )
    return rows


if __name__ == "__main__":
    for row in run():
        print(
            f"{row['model']:18} ours {row['ours_ms_per_step']:.3f} ms/step  "
            f"bare {row['bare_ms_per_step']:.3f} ms/step  ratio {row['ratio']:.3f}"
        )
