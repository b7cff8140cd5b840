"""One training step: forward, backward and the optimizer's update, in whatever form it needs.

Plain optimizers take `step()`; those that need the loss (Polyak-type step sizes) take
`step(loss=...)`; two-pass strategies (SAM, ASAM) own a second forward/backward on the same batch,
with batch-norm statistics kept from the first pass only. The loss returned is the first pass's.
With fp16 a gradient scaler (trainlib.precision) scales the loss before backward and unscales
the gradients before the update, skipping steps whose gradients overflowed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@contextmanager
def batchnorm_stats_frozen(model: nn.Module) -> Iterator[None]:
    """Run a forward pass without changing any normalization's running state.

    Every buffer is restored, not only batch norm's: power, online and unified norms keep
    running statistics and step counters of their own, and a second (SAM-style) pass must not
    advance them twice.
    """
    saved = [
        (m, {k: v.clone() for k, v in m.named_buffers(recurse=False)})
        for m in model.modules()
        if next(m.buffers(recurse=False), None) is not None
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for module, buffers in saved:
                for name, value in buffers.items():
                    getattr(module, name).copy_(value)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    *,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step; returns the (first-pass) loss and logits, still on the device."""
    logits = model(x)
    loss = loss_fn(logits, y)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        _scaled_step(optimizer, loss, scaler)
        return loss, logits
    loss.backward()
    if getattr(optimizer, "two_pass", False):
        optimizer.first_step()  # type: ignore[attr-defined]
        optimizer.zero_grad(set_to_none=True)
        with batchnorm_stats_frozen(model):
            second = loss_fn(model(x), y)
            second.backward()
        optimizer.second_step(loss=second.detach())  # type: ignore[attr-defined]
    elif getattr(optimizer, "needs_loss", False):
        optimizer.step(loss=loss.detach())  # type: ignore[call-overload]
    else:
        optimizer.step()
    return loss, logits


def _scaled_step(
    optimizer: torch.optim.Optimizer, loss: torch.Tensor, scaler: torch.amp.GradScaler
) -> None:
    """Backward of the scaled loss; the scaler unscales, then steps unless gradients overflowed."""
    if getattr(optimizer, "two_pass", False):
        raise ValueError("fp16 loss scaling cannot drive a two-pass optimizer; use bf16")
    scaler.scale(loss).backward()
    if getattr(optimizer, "needs_loss", False):
        scaler.step(optimizer, loss=loss.detach())
    else:
        scaler.step(optimizer)
    scaler.update()


@contextmanager
def evaluation_weights(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Optimizers that keep separate evaluation weights (schedule-free) swap them in here."""
    to_eval = getattr(optimizer, "eval", None)
    to_train = getattr(optimizer, "train", None)
    if callable(to_eval) and callable(to_train):
        to_eval()
        try:
            yield
        finally:
            to_train()
    else:
        yield
