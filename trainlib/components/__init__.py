"""Importing this package registers every built-in component."""

import trainlib.optim  # noqa: F401  (optimizers live in their own package)
from trainlib.components import datasets, inits, losses, models, schedules

__all__ = ["datasets", "inits", "losses", "models", "schedules"]
