"""Importing this package registers every built-in component."""

import trainlib.optim
import trainlib.regularizers  # noqa: F401  (so do regularizers)
from trainlib.components import (
    datasets,
    inits,
    inits_lsuv,
    inits_mup,
    inits_residual,
    inits_selection,
    loss_focal,
    loss_imbalance,
    loss_robust,
    losses,
    models,
    models_cnn,
    models_transformer,
    norms,
    schedules,
)

__all__ = [
    "datasets",
    "inits",
    "inits_lsuv",
    "inits_mup",
    "inits_residual",
    "inits_selection",
    "loss_focal",
    "loss_imbalance",
    "loss_robust",
    "losses",
    "models",
    "models_cnn",
    "models_transformer",
    "norms",
    "schedules",
]
