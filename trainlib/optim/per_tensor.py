"""A base for optimizers whose group update is one foreach pass or a loop over tensors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from trainlib.optim.base import RegimenOptimizer, use_foreach


class PerTensorOptimizer(RegimenOptimizer):
    """step(): per group, the tensors with a gradient, their (lazily made) state, then either
    `_step_foreach` on all of them or `_step_single` on each; both paths give the same numbers."""

    def _state(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _step_single(self, group: dict[str, Any], p: torch.Tensor, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _step_foreach(
        self, group: dict[str, Any], params: list[torch.Tensor], states: list[dict[str, Any]]
    ) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._closure_loss(closure)
        for group, params in self._groups_with_grads():
            states = [self._state(p, group) for p in params]
            if use_foreach(group["foreach"], params):
                self._step_foreach(group, params, states)
            else:
                for p, state in zip(params, states, strict=True):
                    self._step_single(group, p, state)
        return loss
