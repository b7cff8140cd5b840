"""NumPy reference for `grams` (official Gunale0926/Grams semantics, formulas §15; Grams:
Gradient Descent with Adaptive Momentum Scaling).

θ ← θ − ηλθ (if λ > 0); m ← β1m + (1 − β1)g; v ← β2v + (1 − β2)g²;
θ ← θ − η·sqrt(1 − β2^t)/(1 − β1^t) · sign(g)·|m| / (sqrt(v) + ε).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def reference(spec: dict[str, Any], problem: Any, steps: int) -> list[dict[str, np.ndarray]]:
    lr = spec.get("lr", 1e-3)
    beta1, beta2 = spec.get("betas", (0.9, 0.999))
    eps = spec.get("eps", 1e-6)
    lam = spec.get("weight_decay", 0.0)
    correct_bias = spec.get("correct_bias", True)
    theta = {k: v.astype(np.float64).copy() for k, v in problem.init.items()}
    m = {k: np.zeros_like(v) for k, v in theta.items()}
    v = {k: np.zeros_like(x) for k, x in theta.items()}
    out = []
    for t in range(1, steps + 1):
        grad = problem.grad(theta)
        size = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t) if correct_bias else lr
        for k, g in grad.items():
            if lam > 0:
                theta[k] = theta[k] - lr * lam * theta[k]
            m[k] = beta1 * m[k] + (1 - beta1) * g
            v[k] = beta2 * v[k] + (1 - beta2) * g * g
            theta[k] = theta[k] - size * np.sign(g) * np.abs(m[k]) / (np.sqrt(v[k]) + eps)
        out.append({k: x.copy() for k, x in theta.items()})
    return out
