"""Numeric precision of a training step: fp32, bf16 autocast, or fp16 autocast with loss scaling.

Mixed precision (Micikevicius et al., "Mixed Precision Training", 2018): weights and optimizer
state stay in fp32; matrix products run in the low-precision type under `torch.autocast`; fp16
(5 exponent bits) also needs dynamic loss scaling so that small gradients do not flush to zero,
which `torch.amp.GradScaler` provides (scale up, unscale before the update, skip steps with
inf/NaN gradients and halve the scale). bf16 keeps fp32's exponent range and needs no scaler.

The whole step runs inside autocast; autocast does not apply to the backward pass (backward ops
run in the dtype their forward chose), so strategies that own their passes work unchanged.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Literal

import torch

PrecisionName = Literal["fp32", "bf16", "fp16"]

_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """The autocast context and, for fp16, the gradient scaler (its state is checkpointed)."""

    def __init__(self, name: PrecisionName, device: torch.device) -> None:
        if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("bf16 needs an Ampere or newer GPU; use fp16 on this device")
        self.name = name
        self.device_type = device.type
        self.dtype = _DTYPES.get(name)
        self.scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None

    def autocast(self) -> AbstractContextManager[Any]:
        """Autocast to the low-precision type; a no-op context for fp32."""
        return torch.autocast(
            self.device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None
        )

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state (scale, growth tracker); empty without a scaler."""
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is None:
            if state:
                raise ValueError(f"precision {self.name} keeps no state, got {sorted(state)}")
            return
        self.scaler.load_state_dict(state["scaler"])
