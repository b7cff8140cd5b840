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
from trainlib.checkpoint import CheckpointError, read_state_info
from trainlib.distributed import from_environment, shutdown
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


def _write_metrics(path: Path, metrics: Sequence[Metric], resumed_at: int | None) -> None:
    """metrics.csv; a resumed run keeps the rows of the run it continues, up to its step."""
    rows: list[list[str]] = []
    if resumed_at is not None and path.is_file():
        with path.open(newline="") as fh:
            rows = [r for r in list(csv.reader(fh))[1:] if int(r[0]) <= resumed_at]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "name", "value"])
        writer.writerows(rows)
        writer.writerows((m.step, m.name, repr(m.value)) for m in metrics)


def _run(spec_path: Path, out: Path, resume: Path | None) -> int:
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
    dist = from_environment()  # under torchrun: one of N data-parallel processes
    try:
        resumed_at = read_state_info(resume).step if resume is not None else None
        result = train(spec, sink, out_dir=out, resume_from=resume, distributed=dist)
    except CheckpointError as exc:
        print(f"error: --resume: {exc}", file=sys.stderr)
        return 2
    finally:
        shutdown(dist)
    if not dist.is_main:  # rank 0 reports for all
        return 0
    _write_metrics(out / "metrics.csv", sink.metrics, resumed_at)
    print(json.dumps({"status": result.status, "step": result.step, **result.final_metrics}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainlib")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train a job spec locally, with no service")
    run.add_argument("spec", type=Path)
    run.add_argument("--out", type=Path, required=True, help="folder for metrics.csv, checkpoint")
    run.add_argument(
        "--resume",
        type=Path,
        metavar="STATE",
        help="continue from a full-state checkpoint (state-<step>.safetensors) of the same spec",
    )
    comps = sub.add_parser("components", help="list every registered component")
    comps.add_argument("--json", action="store_true", help="full catalog with JSON schemas")
    args = parser.parse_args(argv)

    if args.command == "run":
        args.out.mkdir(parents=True, exist_ok=True)
        return _run(args.spec, args.out, args.resume)
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
