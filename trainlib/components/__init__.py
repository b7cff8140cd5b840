"""Importing this package registers every built-in component."""

from trainlib.components import datasets, inits, losses, models, optimizers, schedules

__all__ = ["datasets", "inits", "losses", "models", "optimizers", "schedules"]
