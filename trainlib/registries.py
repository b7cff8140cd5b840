"""The registry instances, one per kind of component."""

from __future__ import annotations

from trainlib.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULES: Registry = Registry("schedule")
LOSSES: Registry = Registry("loss")
REGULARIZERS: Registry = Registry("regularizer")
MODELS: Registry = Registry("model")
INITS: Registry = Registry("init")
DATASETS: Registry = Registry("dataset")
NORMS: Registry = Registry("norm")

ALL = {
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "loss": LOSSES,
    "regularizer": REGULARIZERS,
    "model": MODELS,
    "init": INITS,
    "dataset": DATASETS,
    "norm": NORMS,
}
