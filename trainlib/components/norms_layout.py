"""Input layouts a normalization layer can be asked to handle, and the reshapes between them.

"features": (N, ..., C), normalise the last dimension (MLP hidden states, transformer tokens).
"channels": (N, C, H, W), convolutional feature maps.
Batch-statistics norms work on one canonical view, (N, C, L): per-channel statistics are taken over
dims (0, 2) in both layouts, and per-sample quantities over dim 2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

Layout = Literal["features", "channels"]

Restore = Callable[[torch.Tensor], torch.Tensor]


def to_ncl(x: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, Restore]:
    """(N, C, L) view of x and the function that turns a tensor of that shape back into x's."""
    shape = x.shape
    n = shape[0]
    if layout == "channels":
        return x.reshape(n, shape[1], -1), lambda y: y.reshape(shape)
    c = shape[-1]
    ncl = x.reshape(n, -1, c).transpose(1, 2)
    return ncl, lambda y: y.transpose(1, 2).reshape(shape)


def channel_view(t: torch.Tensor) -> torch.Tensor:
    """A per-channel vector (C,) shaped to broadcast against (N, C, L)."""
    return t.view(1, -1, 1)


class PerPosition(nn.Module):
    """Applies a last-dimension norm to (N, C, H, W) at each position, over the channels."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.inner(x.movedim(1, -1))
        return out.movedim(-1, 1)


def per_position(module: nn.Module, layout: Layout) -> nn.Module:
    return module if layout == "features" else PerPosition(module)
