"""Optimizers, parameter groups, gradient clipping and two-pass step strategies (SAM, ASAM)."""

from trainlib.optim import sam, torch_native
from trainlib.optim.build import build_optimizer

__all__ = ["build_optimizer", "sam", "torch_native"]
