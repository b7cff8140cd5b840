"""Regimen's library core: components by name, a job-spec schema and the training loop.

Imports torch, never the database or Celery: `python -m trainlib run spec.yaml` trains locally.
"""

from trainlib.loop import TrainResult, train
from trainlib.optim.build import build_optimizer
from trainlib.registries import ALL as REGISTRIES
from trainlib.registry import Registry
from trainlib.sink import CollectingSink, Metric, NullSink, Sink
from trainlib.spec import JobSpec, SpecError, parse_spec, resolve, spec_hash

__all__ = [
    "REGISTRIES",
    "CollectingSink",
    "JobSpec",
    "Metric",
    "NullSink",
    "Registry",
    "Sink",
    "SpecError",
    "TrainResult",
    "build_optimizer",
    "parse_spec",
    "resolve",
    "spec_hash",
    "train",
]
