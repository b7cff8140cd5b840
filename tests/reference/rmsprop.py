"""NumPy reference for `rmsprop` (torch.optim.RMSprop's documented algorithm; Tieleman & Hinton).

g ← g + λθ; v ← αv + (1 − α)g²; centered: ḡ ← αḡ + (1 − α)g and ṽ = v − ḡ², else ṽ = v;
d = g/(sqrt(ṽ) + ε); momentum μ > 0: b ← μb + d, θ ← θ − ηb; else θ ← θ − ηd.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def reference(spec: dict[str, Any], problem: Any, steps: int) -> list[dict[str, np.ndarray]]:
    lr = spec.get("lr", 1e-2)
    alpha = spec.get("alpha", 0.99)
    eps = spec.get("eps", 1e-8)
    lam = spec.get("weight_decay", 0.0)
    mu = spec.get("momentum", 0.0)
    centered = spec.get("centered", False)
    theta = {k: v.astype(np.float64).copy() for k, v in problem.init.items()}
    sq = {k: np.zeros_like(v) for k, v in theta.items()}
    mean = {k: np.zeros_like(v) for k, v in theta.items()}
    buf = {k: np.zeros_like(v) for k, v in theta.items()}
    out = []
    for _ in range(steps):
        grad = problem.grad(theta)
        for k, g in grad.items():
            g = g + lam * theta[k]
            sq[k] = alpha * sq[k] + (1 - alpha) * g * g
            var = sq[k]
            if centered:
                mean[k] = alpha * mean[k] + (1 - alpha) * g
                var = sq[k] - mean[k] ** 2
            d = g / (np.sqrt(var) + eps)
            if mu > 0:
                buf[k] = mu * buf[k] + d
                d = buf[k]
            theta[k] = theta[k] - lr * d
        out.append({k: x.copy() for k, x in theta.items()})
    return out
