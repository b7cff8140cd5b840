"""NumPy LARS, written from the paper's Algorithm 1 as the formulas file §14 states it."""

from __future__ import annotations

import numpy as np


def reference(spec: dict, problem, steps: int) -> list[dict[str, np.ndarray]]:
    lr = spec.get("lr", 1.0)
    wd = spec.get("weight_decay", 5e-4)
    mu = spec.get("momentum", 0.9)
    eta = spec.get("trust_coefficient", 1e-3)
    eps = spec.get("eps", 0.0)
    clip = spec.get("trust_clip", False)
    exclude_1d = spec.get("exclude_1d", False)

    theta = {k: v.copy() for k, v in problem.init.items()}
    vel = {k: np.zeros_like(x) for k, x in theta.items()}
    out = []
    for _ in range(steps):
        grads = problem.grad(theta)
        for k, x in theta.items():
            g = grads[k]
            w_norm, g_norm = np.linalg.norm(x), np.linalg.norm(g)
            if w_norm > 0 and g_norm > 0:
                local = eta * w_norm / (g_norm + wd * w_norm + eps)
            else:
                local = 1.0
            rate = min(local, lr) if clip else lr * local
            if exclude_1d and x.ndim <= 1:
                rate = lr
            vel[k] = mu * vel[k] + rate * (g + wd * x)
            theta[k] = x - vel[k]
        out.append({k: x.copy() for k, x in theta.items()})
    return out
