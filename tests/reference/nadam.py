"""NumPy reference for `nadam` (torch semantics, formulas §5; Dozat 2016).

μ_t = β1(1 − ½·0.96^(tψ)); Π_t = Π_{t−1}μ_t; m, v as Adam (m with the constant β1);
D = sqrt(v/(1 − β2^t)) + ε; θ ← θ − η(1 − μ_t)/(1 − Π_t)·g/D − η μ_{t+1}/(1 − Π_t μ_{t+1})·m/D.
Weight decay: L2 (g + λθ) or decoupled θ(1 − ηλ).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def reference(spec: dict[str, Any], problem: Any, steps: int) -> list[dict[str, np.ndarray]]:
    lr = spec.get("lr", 2e-3)
    beta1, beta2 = spec.get("betas", (0.9, 0.999))
    eps = spec.get("eps", 1e-8)
    lam = spec.get("weight_decay", 0.0)
    psi = spec.get("momentum_decay", 4e-3)
    decoupled = spec.get("decoupled_weight_decay", False)
    theta = {k: v.astype(np.float64).copy() for k, v in problem.init.items()}
    m = {k: np.zeros_like(v) for k, v in theta.items()}
    v = {k: np.zeros_like(x) for k, x in theta.items()}
    mu_product = 1.0
    out = []
    for t in range(1, steps + 1):
        grad = problem.grad(theta)
        mu_t = beta1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = beta1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        mu_product *= mu_t
        for k, g in grad.items():
            if decoupled:
                theta[k] = theta[k] * (1 - lr * lam)
            else:
                g = g + lam * theta[k]
            m[k] = beta1 * m[k] + (1 - beta1) * g
            v[k] = beta2 * v[k] + (1 - beta2) * g * g
            denom = np.sqrt(v[k] / (1 - beta2**t)) + eps
            theta[k] = (
                theta[k]
                - lr * (1 - mu_t) / (1 - mu_product) * g / denom
                - lr * mu_next / (1 - mu_product * mu_next) * m[k] / denom
            )
        out.append({k: x.copy() for k, x in theta.items()})
    return out
