"""The job's regularizers in their listed order: one object the loop talks to."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from pydantic import BaseModel
from torch import nn

from trainlib.errors import DataError
from trainlib.registries import REGULARIZERS
from trainlib.regularizers.base import (
    LossFn,
    ParamGroups,
    PenaltyContext,
    Regularizer,
    SetupContext,
    task_mismatch,
)


class RegularizerStack:
    """Calls each hook of every regularizer in the spec's order; logs penalties as reg/<name>."""

    def __init__(self, regularizers: Sequence[Regularizer]) -> None:
        self.items = list(regularizers)
        names = [r.name for r in self.items]
        # the same regularizer twice logs as reg/<name>, reg/<name>#2, ...
        self.labels = [
            name if names[:i].count(name) == 0 else f"{name}#{names[:i].count(name) + 1}"
            for i, name in enumerate(names)
        ]
        strategies = [r for r in self.items if _is_step_strategy(r)]
        self.strategy: Regularizer | None = strategies[0] if strategies else None
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0
        self._recording = True

    @classmethod
    def build(cls, specs: Sequence[BaseModel], setup: SetupContext) -> RegularizerStack:
        built: list[Regularizer] = []
        for spec in specs:
            if (why := task_mismatch(spec, setup.info.task)) is not None:
                raise DataError(why)  # an upload: its task is known only now
            reg = REGULARIZERS.build(spec, setup)
            reg.name = getattr(spec, "name", reg.name)
            reg.settings = spec
            built.append(reg)
        return cls(built)

    def __bool__(self) -> bool:
        return bool(self.items)

    def configure_model(
        self, model: nn.Module, before_averaging: Callable[[nn.Module], None] | None = None
    ) -> None:
        """`before_averaging` runs between the two (a warm start loads reparametrized weights)."""
        # Averaging regularizers copy the model: they go last, after every reparametrization,
        # whatever order the spec lists them in.
        for reg in [r for r in self.items if not _is_averaging(r)]:
            reg.configure_model(model)
        if before_averaging is not None:
            before_averaging(model)
        for reg in [r for r in self.items if _is_averaging(r)]:
            reg.configure_model(model)

    def param_groups(self, groups: ParamGroups) -> ParamGroups:
        for reg in self.items:
            groups = reg.param_groups(groups)
        return groups

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        for reg in self.items:
            x, y = reg.transform_batch(x, y, indices, step)
        return x, y

    def loss_closure(
        self, loss_fn: LossFn, model: nn.Module, x: torch.Tensor, indices: torch.Tensor, step: int
    ) -> LossFn:
        """Base loss plus every penalty; penalties are recorded on the step's first pass only."""
        first_pass = [True]

        def compute(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            base = loss_fn(logits, targets)
            total = base
            ctx = PenaltyContext(model, x, logits, targets, indices, step, base)
            for label, reg in zip(self.labels, self.items, strict=True):
                term = reg.penalty(ctx)
                if term is None:
                    continue
                total = total + term
                if first_pass[0]:
                    self._add(label, term.detach())
            if first_pass[0]:
                self._count += 1
                first_pass[0] = False
            return total

        return compute

    def _add(self, label: str, value: torch.Tensor) -> None:
        if label in self._sums:
            self._sums[label] += value
        else:
            self._sums[label] = value.clone()

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
        for reg in self.items:
            reg.after_step(model, optimizer, step)

    def metrics(self) -> dict[str, float]:
        """Mean penalty per regularizer since the last call (one host sync, at log time)."""
        out = {
            f"reg/{label}": float(total) / max(1, self._count)
            for label, total in self._sums.items()
        }
        self._sums.clear()
        self._count = 0
        return out

    def log_state(self) -> dict[str, Any]:
        """The penalty sums not yet logged (a checkpoint between two log steps carries them)."""
        return {"sums": dict(self._sums), "count": self._count}

    def load_log_state(self, state: dict[str, Any]) -> None:
        self._sums = {label: value.clone() for label, value in state["sums"].items()}
        self._count = int(state["count"])

    def refresh_batchnorm(self, batches: Callable[[], Iterable[torch.Tensor]]) -> None:
        """Averaged models whose batch-norm statistics must be recomputed (swa) get one pass."""
        for reg in self.items:
            refresh = getattr(reg, "refresh_batchnorm", None)
            if callable(refresh):
                refresh(batches())

    def evaluation_models(self) -> dict[str, nn.Module]:
        models = {}
        for label, reg in zip(self.labels, self.items, strict=True):
            averaged = reg.evaluation_model()
            if averaged is not None:
                models[label] = averaged
        return models

    def state_dict(self) -> dict[str, Any]:
        return {label: reg.state_dict() for label, reg in zip(self.labels, self.items, strict=True)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for label, reg in zip(self.labels, self.items, strict=True):
            reg.load_state_dict(state.get(label, {}))


def _is_averaging(reg: Regularizer) -> bool:
    return type(reg).evaluation_model is not Regularizer.evaluation_model


def _is_step_strategy(reg: Regularizer) -> bool:
    return bool(getattr(getattr(reg, "settings", None), "step_strategy", False)) or (
        type(reg).train_step is not Regularizer.train_step
    )
