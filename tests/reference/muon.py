"""NumPy reference for `muon` (KellerJordan/Muon `SingleDeviceMuonWithAuxAdam`, formulas §19).

Hidden matrices (ndim ≥ 2, >2-D viewed as (out, rest)): b ← βb + (1 − β)g; u = (1 − β)g + βb
(Nesterov) or b; O = NS5(u)·sqrt(max(1, rows/cols)) with rows/cols the last two dims;
θ ← θ(1 − ηλ) − ηO. NS5 is computed here without iterating, from the SVD: it maps each singular
value σ of u to p⁵(σ/(‖u‖_F + 1e-7)), p(x) = ax + bx³ + cx⁵ (odd matrix polynomials act on the
singular values only). Everything else (ndim < 2, `adamw_for` names): Keller's Adam with
decoupled decay at lr adamw_lr.
"""

from __future__ import annotations

import math
from fnmatch import fnmatchcase
from typing import Any

import numpy as np

A, B, C = 3.4445, -4.7750, 2.0315


def ns5(u: np.ndarray, steps: int = 5) -> np.ndarray:
    left, sigma, right = np.linalg.svd(u, full_matrices=False)
    s = sigma / (np.linalg.norm(u) + 1e-7)
    for _ in range(steps):
        s = A * s + B * s**3 + C * s**5
    return (left * s) @ right


def reference(spec: dict[str, Any], problem: Any, steps: int) -> list[dict[str, np.ndarray]]:
    lr = spec.get("lr", 0.02)
    beta = spec.get("momentum", 0.95)
    nesterov = spec.get("nesterov", True)
    ns_steps = spec.get("ns_steps", 5)
    lam = spec.get("weight_decay", 0.0)
    adjust = spec.get("adjust_lr", "original")
    lr_a = spec.get("adamw_lr", 3e-4)
    beta1, beta2 = spec.get("adamw_betas", (0.9, 0.95))
    eps = spec.get("adamw_eps", 1e-10)
    patterns = spec.get("adamw_for", ["*embed*"])
    theta = {k: v.astype(np.float64).copy() for k, v in problem.init.items()}
    muon = {
        k: x.ndim >= 2 and not any(fnmatchcase(k, p) for p in patterns) for k, x in theta.items()
    }
    buf = {k: np.zeros_like(x) for k, x in theta.items()}
    m = {k: np.zeros_like(x) for k, x in theta.items()}
    v = {k: np.zeros_like(x) for k, x in theta.items()}
    out = []
    for t in range(1, steps + 1):
        grad = problem.grad(theta)
        for k, g in grad.items():
            x = theta[k]
            if muon[k]:
                buf[k] = beta * buf[k] + (1 - beta) * g
                u = (1 - beta) * g + beta * buf[k] if nesterov else buf[k]
                matrix = u.reshape(u.shape[0], -1)
                if adjust == "original":
                    factor = math.sqrt(max(1.0, x.shape[-2] / x.shape[-1]))
                else:
                    factor = 0.2 * math.sqrt(max(matrix.shape))
                update = ns5(matrix, ns_steps).reshape(x.shape) * factor
                theta[k] = x * (1 - lr * lam) - lr * update
            else:
                m[k] = beta1 * m[k] + (1 - beta1) * g
                v[k] = beta2 * v[k] + (1 - beta2) * g * g
                m_hat = m[k] / (1 - beta1**t)
                v_hat = v[k] / (1 - beta2**t)
                theta[k] = x * (1 - lr_a * lam) - lr_a * m_hat / (np.sqrt(v_hat) + eps)
        out.append({k: x.copy() for k, x in theta.items()})
    return out
