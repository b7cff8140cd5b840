"""Regularizer overhead: added time per step on the quickstart model, each one against none.

Every registered regularizer with its default settings (those that need settings of their own,
e.g. a teacher job, are listed as skipped), 200 steps of the quickstart MLP on digits, one
thread; runs alternate with the plain job so drift hits both. Goal: penalties that need no extra
pass add at most 25 %.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
import yaml

from trainlib import parse_spec, train
from trainlib.registries import REGULARIZERS
from trainlib.spec import SpecError

STEPS = 200


def quickstart(regularizers: list[dict[str, Any]]) -> dict[str, Any]:
    with open("examples/quickstart.yaml") as fh:
        spec: dict[str, Any] = yaml.safe_load(fh)
    spec["data"]["flatten"] = False  # 1x8x8 images (the MLP flattens them): cutmix needs them
    spec["regularizers"] = regularizers
    spec["train"] = {"steps": STEPS, "log_every": 20, "eval_every": STEPS, "device": "cpu"}
    return spec


def seconds(raw: dict[str, Any]) -> float:
    spec = parse_spec(raw)
    start = time.perf_counter()
    train(spec)
    return time.perf_counter() - start


def run(repeats: int = 3, names: list[str] | None = None) -> list[dict[str, Any]]:
    torch.set_num_threads(1)
    plain = quickstart([])
    seconds(plain)  # warm-up
    rows: list[dict[str, Any]] = []
    for name in names or REGULARIZERS.names():
        raw = quickstart([{"name": name}])
        try:
            parse_spec(raw)
        except SpecError as exc:  # needs settings of its own (a teacher job, required fields)
            rows.append({"name": name, "skipped": exc.errors[0]["message"]})
            continue
        base, ours = [], []
        for _ in range(repeats):
            base.append(seconds(plain))
            ours.append(seconds(raw))
        b, o = statistics.median(base), statistics.median(ours)
        rows.append({"name": name, "plain_ms": 1000 * b / STEPS, "ms": 1000 * o / STEPS,
                     "overhead": o / b - 1})  # fmt: skip
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| regularizer | ms/step | plain ms/step | added |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['name']} | – | – | skipped: {r['skipped']} |")
        else:
            added = f"{100 * r['overhead']:+.0f} %"
            lines.append(f"| {r['name']} | {r['ms']:.2f} | {r['plain_ms']:.2f} | {added} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("names", nargs="*")
    args = parser.parse_args()
    print(markdown(run(args.repeats, args.names or None)))
