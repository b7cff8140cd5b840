"""Importing this package registers every built-in component."""

import trainlib.optim
import trainlib.regularizers  # noqa: F401  (so do regularizers)
from trainlib.components import datasets, inits, losses, models, schedules

__all__ = ["datasets", "inits", "losses", "models", "schedules"]
