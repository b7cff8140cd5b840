"""Regularizers: penalties, reparametrizations, data and label methods, step strategies,
weight averaging and distillation. Every module here registers itself when imported.
"""

import importlib
import pkgutil

from trainlib.regularizers.base import (
    PenaltyContext,
    Regularizer,
    RegularizerSettings,
    SetupContext,
)
from trainlib.regularizers.stack import RegularizerStack

_INFRASTRUCTURE = {"base", "stack"}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _INFRASTRUCTURE:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "PenaltyContext",
    "Regularizer",
    "RegularizerSettings",
    "RegularizerStack",
    "SetupContext",
]
