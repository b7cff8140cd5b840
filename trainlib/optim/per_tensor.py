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


class GroupStepOptimizer(RegimenOptimizer):
    """step(): per group, state made for tensors that have none, then `_foreach_step` or
    `_single_step` on the group's tensors with a gradient; both paths give the same numbers."""

    def _init_state(self, p: torch.Tensor, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _single_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        raise NotImplementedError

    def _foreach_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._closure_loss(closure)
        for group, params in self._groups_with_grads():
            for p in params:
                if not self.state[p]:
                    self._init_state(p, self.state[p])
            if use_foreach(group["foreach"], params):
                self._foreach_step(group, params)
            else:
                self._single_step(group, params)
        return loss
