"""Weight decay independent of the peak lr (Small-scale proxies for large-scale Transformer
training instabilities, Wortsman et al., 2023), shared by `adamw` and `sgdw`.

decay="independent": θ ← θ·(1 − (η_t/η_max) λ), η_max the group's lr before any scheduler, so λ
no longer scales with the peak lr; decay="coupled_lr" is the usual θ·(1 − η_t λ).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import model_validator

from trainlib.optim.base import OptimizerSettings


class IndependentDecaySettings(OptimizerSettings):
    """Settings whose subclass declares `decay` ("coupled_lr" | "independent")."""

    #: the weight_decay when decay="independent" and none is given
    independent_default_decay: ClassVar[float]

    if TYPE_CHECKING:  # each subclass declares the field (its own description)
        decay: str

    @model_validator(mode="before")
    @classmethod
    def _independent_default_decay(cls, data: Any) -> Any:
        independent = isinstance(data, dict) and data.get("decay") == "independent"
        if independent and "weight_decay" not in data:
            return {**data, "weight_decay": cls.independent_default_decay}
        return data

    def check_independent_decay(self) -> None:
        # η_t/η_max ≤ 1, so λ ≤ 1 keeps the factor 1 − s_t λ in [0, 1]
        if self.decay == "independent" and self.weight_decay > 1:
            raise ValueError("weight_decay must be <= 1 with decay='independent'")


def remember_base_lr(group: dict[str, Any]) -> None:
    """η_max when no scheduler sets initial_lr: the group's lr at construction."""
    group.setdefault("base_lr", float(group["lr"]))


def independent_decay_factor(group: dict[str, Any]) -> float:
    """1 − (η_t/η_max) λ for a group: η_max is the lr a torch scheduler started from
    (`initial_lr`), else the lr at construction (`base_lr`); no decay when η_max is 0."""
    peak = float(group.get("initial_lr", group["base_lr"]))
    scale = float(group["lr"]) / peak if peak > 0 else 0.0
    return 1.0 - scale * float(group["weight_decay"])
