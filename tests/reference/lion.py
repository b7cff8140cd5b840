"""NumPy reference for `lion` (google/automl lion_pytorch.py semantics, formulas §8; Symbolic
Discovery of Optimization Algorithms).

θ ← θ(1 − ηλ); θ ← θ − η·sign(β1m + (1 − β1)g); m ← β2m + (1 − β2)g.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def reference(spec: dict[str, Any], problem: Any, steps: int) -> list[dict[str, np.ndarray]]:
    lr = spec.get("lr", 1e-4)
    beta1, beta2 = spec.get("betas", (0.9, 0.99))
    lam = spec.get("weight_decay", 0.0)
    theta = {k: v.astype(np.float64).copy() for k, v in problem.init.items()}
    m = {k: np.zeros_like(v) for k, v in theta.items()}
    out = []
    for _ in range(steps):
        grad = problem.grad(theta)
        for k, g in grad.items():
            theta[k] = theta[k] * (1 - lr * lam) - lr * np.sign(beta1 * m[k] + (1 - beta1) * g)
            m[k] = beta2 * m[k] + (1 - beta2) * g
        out.append({k: x.copy() for k, x in theta.items()})
    return out
