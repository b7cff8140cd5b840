"""NumPy reference for `radam` (torch semantics, formulas §6; Liu et al., On the Variance of the
Adaptive Learning Rate and Beyond).

ρ∞ = 2/(1 − β2) − 1, ρ_t = ρ∞ − 2tβ2^t/(1 − β2^t).
ρ_t > 5: θ ← θ − η m̂ r_t sqrt(1 − β2^t)/(sqrt(v) + ε),
         r_t = sqrt((ρ_t−4)(ρ_t−2)ρ∞/((ρ∞−4)(ρ∞−2)ρ_t));
else:    θ ← θ − η m̂.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def reference(spec: dict[str, Any], problem: Any, steps: int) -> list[dict[str, np.ndarray]]:
    lr = spec.get("lr", 1e-3)
    beta1, beta2 = spec.get("betas", (0.9, 0.999))
    eps = spec.get("eps", 1e-8)
    lam = spec.get("weight_decay", 0.0)
    decoupled = spec.get("decoupled_weight_decay", False)
    theta = {k: v.astype(np.float64).copy() for k, v in problem.init.items()}
    m = {k: np.zeros_like(v) for k, v in theta.items()}
    v = {k: np.zeros_like(x) for k, x in theta.items()}
    rho_inf = 2 / (1 - beta2) - 1
    out = []
    for t in range(1, steps + 1):
        grad = problem.grad(theta)
        rho_t = rho_inf - 2 * t * beta2**t / (1 - beta2**t)
        for k, g in grad.items():
            if decoupled:
                theta[k] = theta[k] * (1 - lr * lam)
            else:
                g = g + lam * theta[k]
            m[k] = beta1 * m[k] + (1 - beta1) * g
            v[k] = beta2 * v[k] + (1 - beta2) * g * g
            m_hat = m[k] / (1 - beta1**t)
            if rho_t > 5:
                r = math.sqrt(
                    (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
                )
                theta[k] = theta[k] - lr * m_hat * r * math.sqrt(1 - beta2**t) / (
                    np.sqrt(v[k]) + eps
                )
            else:
                theta[k] = theta[k] - lr * m_hat
        out.append({k: x.copy() for k, x in theta.items()})
    return out
