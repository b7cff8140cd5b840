"""Optimizers, parameter groups, gradient clipping and two-pass step strategies (SAM, ASAM).

Every module of this package is imported here, so an optimizer registers itself by living in it.
"""

import importlib
import pkgutil

from trainlib.optim.build import build_optimizer

_INFRASTRUCTURE = {"base", "build", "clip", "groups"}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _INFRASTRUCTURE:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["build_optimizer"]
