"""NumPy reference for `alr_smag` (the fabian-sp/step-back `AlrSmag` form, formulas §16;
Generalized Polyak Step Size for First Order Optimization with Momentum). Provisional: the
paper's exact d and c are unverified.

d ← βd + g (every tensor); τ = min(η, (f − f*)/(c Σ‖d‖²)); θ ← θ(1 − λτ) − τd.
f is the loss at the current θ (before the step).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def reference(spec: dict[str, Any], problem: Any, steps: int) -> list[dict[str, np.ndarray]]:
    lr = spec.get("lr", 0.1)
    beta = spec.get("beta", 0.9)
    lb = spec.get("lb", 0.0)
    c = spec.get("c", 1.0)
    lam = spec.get("weight_decay", 0.0)
    clamp = spec.get("clamp_negative", False)
    theta = {k: v.astype(np.float64).copy() for k, v in problem.init.items()}
    d = {k: np.zeros_like(v) for k, v in theta.items()}
    out = []
    for _ in range(steps):
        f = problem.loss(theta)
        grad = problem.grad(theta)
        for k, g in grad.items():
            d[k] = beta * d[k] + g
        norm_sq = sum(float((x * x).sum()) for x in d.values())
        gap = max(f - lb, 0.0) if clamp else f - lb
        tau = min(lr, gap / (c * norm_sq))
        for k in theta:
            theta[k] = theta[k] * (1 - lam * tau) - tau * d[k]
        out.append({k: x.copy() for k, x in theta.items()})
    return out
