"""`python -m trainlib run SPEC.yaml --out DIR` and `python -m trainlib components --json`."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from trainlib.catalog import catalog
from trainlib.loop import train
from trainlib.sink import CollectingSink, Metric
from trainlib.spec import SpecError, parse_spec


class _PrintingSink(CollectingSink):
    def __init__(self) -> None:
        super().__init__()
        self._latest: Sequence[Metric] = ()

    def on_metrics(self, points: Sequence[Metric]) -> None:
        super().on_metrics(points)
        self._latest = points  # printed at the next progress call, without rescanning the run

    def on_progress(self, step: int, total: int) -> None:
        shown = " ".join(f"{m.name}={m.value:.4g}" for m in self._latest)
        print(f"step {step}/{total} {shown}", file=sys.stderr, flush=True)


def _run(spec_path: Path, out: Path) -> int:
    try:
        raw = yaml.safe_load(spec_path.read_text())
        spec = parse_spec(raw)
    except (OSError, yaml.YAMLError) as exc:
        print(f"error: cannot read {spec_path}: {exc}", file=sys.stderr)
        return 2
    except SpecError as exc:
        for err in exc.errors:
            print(f"error: {err['path']}: {err['message']}", file=sys.stderr)
        return 2
    sink = _PrintingSink()
    result = train(spec, sink, out_dir=out)
    with (out / "metrics.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "name", "value"])
        writer.writerows((m.step, m.name, repr(m.value)) for m in sink.metrics)
    print(json.dumps({"status": result.status, "step": result.step, **result.final_metrics}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainlib")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train a job spec locally, with no service")
    run.add_argument("spec", type=Path)
    run.add_argument("--out", type=Path, required=True, help="folder for metrics.csv, checkpoint")
    comps = sub.add_parser("components", help="list every registered component")
    comps.add_argument("--json", action="store_true", help="full catalog with JSON schemas")
    args = parser.parse_args(argv)

    if args.command == "run":
        args.out.mkdir(parents=True, exist_ok=True)
        return _run(args.spec, args.out)
    cat = catalog()
    if args.json:
        print(json.dumps(cat, indent=2))
    else:
        for kind, entries in cat.items():
            for e in entries:
                print(f"{kind:12} {e['name']:16} {e['summary']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
