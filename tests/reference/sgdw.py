"""NumPy reference for `sgdw`, from Decoupled Weight Decay Regularization and formulas §2.

coupled_lr (timm/pytorch-optimizer SGDW): b = g at t = 1, else b = μb + (1 − τ)g;
d = g + μb (nesterov) or b; θ ← θ(1 − η_t λ) − η_t d.
independent (the authors' Torch7 code): θ ← θ − η_t d − (η_t/η_max) λ θ_{t−1}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def reference(
    spec: dict[str, Any],
    problem: Any,
    steps: int,
    schedule: Callable[[int], float] | None = None,
) -> list[dict[str, np.ndarray]]:
    """`schedule(t − 1)` multiplies the lr at step t (η_max = lr)."""
    lr = spec.get("lr", 0.1)
    mu = spec.get("momentum", 0.9)
    tau = spec.get("dampening", 0.0)
    nesterov = spec.get("nesterov", False)
    independent = spec.get("decay", "coupled_lr") == "independent"
    lam = spec.get("weight_decay", 5e-5 if independent else 5e-4)
    theta = {k: v.astype(np.float64).copy() for k, v in problem.init.items()}
    buf: dict[str, np.ndarray] = {}
    out = []
    for t in range(1, steps + 1):
        s = schedule(t - 1) if schedule else 1.0
        eta = lr * s
        grad = problem.grad(theta)
        for k, g in grad.items():
            d = g
            if mu != 0:
                buf[k] = g.copy() if t == 1 else mu * buf[k] + (1 - tau) * g
                d = g + mu * buf[k] if nesterov else buf[k]
            old = theta[k]
            decay = s * lam if independent else eta * lam
            theta[k] = old - eta * d - decay * old
        out.append({k: v.copy() for k, v in theta.items()})
    return out
