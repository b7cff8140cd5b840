"""NumPy reference for `adagrad` (torch.optim.Adagrad's documented algorithm; Duchi, Hazan & Singer,
Adaptive Subgradient Methods for Online Learning and Stochastic Optimization).

η_t = η/(1 + (t − 1)·lr_decay); g ← g + λθ; s ← s + g² (s_0 = initial_accumulator_value);
θ ← θ − η_t g/(sqrt(s) + ε).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def reference(spec: dict[str, Any], problem: Any, steps: int) -> list[dict[str, np.ndarray]]:
    lr = spec.get("lr", 1e-2)
    lr_decay = spec.get("lr_decay", 0.0)
    lam = spec.get("weight_decay", 0.0)
    init = spec.get("initial_accumulator_value", 0.0)
    eps = spec.get("eps", 1e-10)
    theta = {k: v.astype(np.float64).copy() for k, v in problem.init.items()}
    acc = {k: np.full_like(v, init) for k, v in theta.items()}
    out = []
    for t in range(1, steps + 1):
        grad = problem.grad(theta)
        eta = lr / (1 + (t - 1) * lr_decay)
        for k, g in grad.items():
            g = g + lam * theta[k]
            acc[k] = acc[k] + g * g
            theta[k] = theta[k] - eta * g / (np.sqrt(acc[k]) + eps)
        out.append({k: x.copy() for k, x in theta.items()})
    return out
