"""Optimizer step time: ms per step on one 4.2M-parameter set, every optimizer side by side.

Four 1024x1024 matrices and their biases, fixed random gradients, float32 on the CPU. Each
optimizer is timed in this one run beside torch's fused AdamW (measured first and last, to show
drift) and, where pytorch-optimizer is installed and has the algorithm, beside its version.
pytorch-optimizer lives only in the benchmark's own environment: `make bench-env`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import trainlib.spec  # noqa: F401  (registers every component)
from trainlib import build_optimizer
from trainlib.registries import OPTIMIZERS

TWO_PASS = {"sam", "asam"}  # their cost is a second forward/backward, not the update
# Settings that make each run comparable: lr where the default is tuned for another scale.
OVERRIDES: dict[str, dict[str, Any]] = {}
# pytorch-optimizer's names where they differ from ours.
PO_NAMES = {"schedulefree_adamw": "schedulefreeadamw", "momo_adam": "momo"}


def make_params(seed: int = 0) -> list[nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    params = []
    for _ in range(4):
        params.append(nn.Parameter(torch.randn(1024, 1024, generator=gen) * 0.02))
        params.append(nn.Parameter(torch.zeros(1024)))
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 1e-3
    return params


def time_steps(make: Callable[[list[nn.Parameter]], torch.optim.Optimizer], steps: int) -> float:
    """Median milliseconds per step (after warm-up steps that create the state)."""
    params = make_params()
    optimizer = make(params)
    loss = torch.tensor(1.0)
    needs_loss = getattr(optimizer, "needs_loss", False)

    def step() -> None:
        if needs_loss:
            optimizer.step(loss=loss)  # type: ignore[call-overload]
        else:
            optimizer.step()

    for _ in range(3):
        step()
    samples = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        samples.append(time.perf_counter() - start)
    return 1000 * statistics.median(samples)


def pytorch_optimizer_factory(name: str) -> Callable[[list[nn.Parameter]], Any] | None:
    try:
        from pytorch_optimizer import load_optimizer
    except ImportError:
        return None
    try:
        cls = load_optimizer(PO_NAMES.get(name, name))
    except Exception:
        return None
    return lambda params: cls(params, lr=1e-3)


def run(steps: int = 10, names: list[str] | None = None) -> list[dict[str, Any]]:
    torch.set_num_threads(1)  # a shared 2-core machine: one thread is the stable measurement

    def fused(params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=1e-3, fused=True)

    baseline_first = time_steps(fused, steps)
    rows: list[dict[str, Any]] = []
    for name in names or OPTIMIZERS.names():
        if name in TWO_PASS:
            continue
        spec = {"name": name, **OVERRIDES.get(name, {})}

        def ours_make(params: list[nn.Parameter], spec: dict[str, Any] = spec) -> Any:
            return build_optimizer(spec, params)

        ours = time_steps(ours_make, steps)
        po_make = pytorch_optimizer_factory(name)
        theirs = None
        if po_make is not None:
            try:
                theirs = time_steps(po_make, steps)
            except Exception as exc:  # its API differs (closure, param groups): leave it out
                print(f"pytorch-optimizer {name}: {type(exc).__name__}: {exc}"[:200])
        rows.append({"name": name, "ours_ms": ours, "po_ms": theirs})
    baseline_last = time_steps(fused, steps)
    baseline = (baseline_first + baseline_last) / 2
    for row in rows:
        row["vs_fused_adamw"] = row["ours_ms"] / baseline
        row["vs_po"] = row["ours_ms"] / row["po_ms"] if row["po_ms"] else None
    rows.insert(0, {"name": "torch fused AdamW (first, last)", "ours_ms": baseline,
                    "first": baseline_first, "last": baseline_last})  # fmt: skip
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    head = rows[0]
    lines = [
        f"torch fused AdamW: {head['first']:.2f} ms first, {head['last']:.2f} ms last",
        "",
        "| optimizer | ours ms/step | × fused AdamW | pytorch-optimizer ms/step | ours / theirs |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows[1:]:
        po = f"{row['po_ms']:.2f}" if row["po_ms"] else "–"
        ratio = f"{row['vs_po']:.2f}" if row["vs_po"] else "–"
        ours = f"{row['ours_ms']:.2f} | {row['vs_fused_adamw']:.2f}"
        lines.append(f"| {row['name']} | {ours} | {po} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("names", nargs="*")
    args = parser.parse_args()
    print(markdown(run(args.steps, args.names or None)))
