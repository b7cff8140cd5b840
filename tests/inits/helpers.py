"""Tiny models following the model contract (stem, residual blocks, head) for the init tests."""

from __future__ import annotations

import torch
from torch import nn

from trainlib.components.blocks import ResidualBlock, ResidualMode


class ResMLP(nn.Module):
    """stem Linear -> `depth` blocks x + branch(x), branch = Linear, ReLU, Linear -> head."""

    def __init__(
        self, width: int = 32, depth: int = 3, inputs: int = 10, classes: int = 4,
        mode: ResidualMode = "plain",
    ) -> None:  # fmt: skip
        super().__init__()
        self.stem = nn.Linear(inputs, width)
        self.blocks = nn.Sequential(
            *[
                ResidualBlock(
                    nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width)),
                    mode,
                )
                for _ in range(depth)
            ]
        )
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.blocks(torch.relu(self.stem(x))))
        return out


class ResCNN(nn.Module):
    """stem Conv2d -> blocks with a conv, ReLU, conv branch -> global average pool -> head."""

    def __init__(self, channels: int = 8, depth: int = 2, classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, padding=1)

        def branch() -> nn.Module:
            return nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(channels, channels, 3, padding=1),
            )

        self.blocks = nn.Sequential(*[ResidualBlock(branch()) for _ in range(depth)])
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(torch.relu(self.stem(x)))
        out: torch.Tensor = self.head(h.mean(dim=(2, 3)))
        return out


def plain_mlp(inputs: int, widths: list[int], classes: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Linear(inputs, width), nn.ReLU()]
        inputs = width
    return nn.Sequential(*layers, nn.Linear(inputs, classes))


def block_inputs(model: nn.Module, x: torch.Tensor) -> list[tuple[ResidualBlock, torch.Tensor]]:
    """Each residual block with the input it receives when `model` runs on `x`."""
    seen: list[tuple[ResidualBlock, torch.Tensor]] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: seen.append((mod, args[0].detach())))
        for m in model.modules()
        if isinstance(m, ResidualBlock)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen
