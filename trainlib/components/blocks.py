"""Residual blocks shared by every model, the contract residual-aware inits (fixup, zero, mup) use.

`out = post(x + gate * drop_path(branch(x)) + bias)`, where
- plain: no gate, no bias (He et al., "Deep Residual Learning", 2016);
- rezero: one scalar gate initialised to 0, so the block starts as the identity
  ("ReZero is All You Need", Bachlechner et al., 2020, arXiv 2003.04887);
- fixup: one scalar multiplier initialised to 1 and one scalar bias initialised to 0 after the
  branch; the branch itself carries `ScalarBias` modules before its layers
  ("Fixup Initialization", Zhang et al., 2019, arXiv 1901.09321).
`post` is the identity except in Post-LN transformers, where it is the norm after the sum.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

ResidualMode = Literal["plain", "rezero", "fixup"]


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al., "Deep Networks with Stochastic Depth", 2016).

    Drops the whole branch per sample with probability p and scales survivors by 1/(1-p), so
    the expectation is unchanged; the identity at evaluation.
    """
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    mask = x.new_empty(shape).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ScalarBias(nn.Module):
    """One learnable scalar added to every element (Fixup's scalar biases, init 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


def fixup_bias(mode: ResidualMode | None) -> nn.Module:
    """A scalar bias in fixup mode, the identity otherwise (models call it before each layer)."""
    return ScalarBias() if mode == "fixup" else nn.Identity()


class ResidualBlock(nn.Module):
    """`out = post(x + gate * drop_path(branch(x)) + bias)`; see the module docstring."""

    def __init__(
        self,
        branch: nn.Module,
        mode: ResidualMode = "plain",
        drop_path: float = 0.0,
        post: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.branch = branch
        self.mode: ResidualMode = mode
        self.drop_path = DropPath(drop_path)
        self.post = post if post is not None else nn.Identity()
        self.gate: nn.Parameter | None = None
        self.bias: nn.Parameter | None = None
        if mode == "rezero":
            self.gate = nn.Parameter(torch.zeros(()))
        elif mode == "fixup":
            self.gate = nn.Parameter(torch.ones(()))
            self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if self.gate is not None:
            out = self.gate * out
        if self.bias is not None:
            out = out + self.bias
        result: torch.Tensor = self.post(x + self.drop_path(out))
        return result

    def branch_layers(self) -> list[nn.Module]:
        """The branch's weight layers (Linear / Conv2d), first to last in forward order."""
        return [m for m in self.branch.modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def residual_blocks(model: nn.Module) -> list[ResidualBlock]:
    """Every residual block of a model, in forward order."""
    return [m for m in model.modules() if isinstance(m, ResidualBlock)]
