"""Paper reproductions: each example of examples/README.md run at full length, its claim measured.

`python -m bench.reproduce` (add `--only grokking` etc. for one) trains every reproduction spec
on this machine, one thread, and prints what it measured as markdown: nothing here is fixed in
advance, the figures in examples/README.md are this script's output. tests/reproductions/ call
the same functions with shorter budgets.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from trainlib import parse_spec, train
from trainlib.sink import CollectingSink

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
QK_SWEEP = EXAMPLES / "qk-layernorm-lr-sweep"
QK_LRS = (3e-4, 3e-3, 3e-2, 3e-1)
PLASTICITY = (
    "plasticity-sgd",
    "plasticity-spectral",
    "plasticity-l2-init",
    "plasticity-shrink-perturb",
)


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` laid over it, mappings merged key by key."""
    out = dict(base)
    for key, value in overrides.items():
        old = out.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            out[key] = merge(old, value)
        else:
            out[key] = value
    return out


def load(path: Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(path.read_text())
    return merge(raw, overrides or {})


def run(raw: dict[str, Any]) -> CollectingSink:
    sink = CollectingSink()
    train(parse_spec(raw), sink)
    return sink


def last(sink: CollectingSink, name: str) -> float:
    return sink.series(name)[-1][1]


def first_step(series: Sequence[tuple[int, float]], threshold: float) -> int | None:
    """The first logged step whose value is at least `threshold` (None: never)."""
    return next((step for step, value in series if value >= threshold), None)


@dataclass(frozen=True)
class Grokking:
    train_step: int | None  # training accuracy first >= 0.99
    val_step: int | None  # validation accuracy first >= 0.95
    final_val_accuracy: float


def grokking(overrides: Mapping[str, Any] | None = None) -> Grokking:
    """Power et al. (2022): validation accuracy reaches 0.95 well after training accuracy 0.99."""
    sink = run(load(EXAMPLES / "grokking-modular.yaml", overrides))
    return Grokking(
        first_step(sink.series("accuracy"), 0.99),
        first_step(sink.series("val_accuracy"), 0.95),
        last(sink, "val_accuracy"),
    )


@dataclass(frozen=True)
class BitNet:
    ternary: float  # final validation accuracy of the 1.58-bit MLP
    full_precision: float  # and of its fp32 twin


def bitnet(overrides: Mapping[str, Any] | None = None) -> BitNet:
    """BitNet b1.58 (Ma et al., 2024): ternary weights within a few points of full precision."""
    q = run(load(EXAMPLES / "bitnet-digits.yaml", overrides))
    fp = run(load(EXAMPLES / "bitnet-digits-fp.yaml", overrides))
    return BitNet(last(q, "val_accuracy"), last(fp, "val_accuracy"))


@dataclass(frozen=True)
class SweepArm:
    final_val_loss: dict[float, float]  # learning rate -> final validation loss

    @property
    def spread(self) -> float:
        """max − min of the final loss over the learning rates: the LR sensitivity."""
        losses = self.final_val_loss.values()
        return max(losses) - min(losses)


def qk_sweep(
    arm: str, lrs: Sequence[float] = QK_LRS, overrides: Mapping[str, Any] | None = None
) -> SweepArm:
    """Wortsman et al. (2023): one arm (`baseline` or `qk-layernorm`) over the learning rates."""
    losses: dict[float, float] = {}
    for lr in lrs:
        raw = load(QK_SWEEP / f"{arm}.yaml", merge(overrides or {}, {"optimizer": {"lr": lr}}))
        losses[lr] = last(run(raw), "val_loss")
    return SweepArm(losses)


def plasticity(name: str, overrides: Mapping[str, Any] | None = None) -> list[float]:
    """Each task's accuracy at its end, in order (random labels: the fit of that task)."""
    sink = run(load(EXAMPLES / f"{name}.yaml", overrides))
    return [value for _, value in sink.series("task_accuracy")]


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values)


def report(only: str | None = None) -> Iterator[str]:
    """One markdown line per measured outcome, each as soon as its runs finish."""
    if only in (None, "grokking"):
        g = grokking()
        yield (
            f"- grokking-modular: train acc >= 0.99 at step {g.train_step}, val acc >= 0.95 at "
            f"step {g.val_step}, final val acc {g.final_val_accuracy:.3f}"
        )
    if only in (None, "qk"):
        for arm in ("baseline", "qk-layernorm"):
            s = qk_sweep(arm)
            shown = ", ".join(f"lr {lr:g}: {loss:.3f}" for lr, loss in s.final_val_loss.items())
            yield f"- qk-layernorm-lr-sweep/{arm}: final val loss {shown}; spread {s.spread:.3f}"
    if only in (None, "plasticity"):
        for name in PLASTICITY:
            acc = plasticity(name)
            yield (
                f"- {name}: task accuracy: task 1 {acc[0]:.3f}, best {max(acc):.3f}, tasks 6-10 "
                f"mean {_mean(acc[5:10]):.3f}, last 3 tasks mean {_mean(acc[-3:]):.3f}, "
                f"last task {acc[-1]:.3f}"
            )
    if only in (None, "bitnet"):
        b = bitnet()
        yield (
            f"- bitnet-digits: 1.58-bit val acc {b.ternary:.3f}, full precision "
            f"{b.full_precision:.3f} ({100 * (b.full_precision - b.ternary):+.1f} points)"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reproduce")
    parser.add_argument("--only", choices=("grokking", "qk", "plasticity", "bitnet"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print("## Paper reproductions (full length, 1 thread)\n")
    for line in report(args.only):
        print(line, flush=True)


if __name__ == "__main__":
    main()
