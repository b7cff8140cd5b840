"""NumPy reference for `adamp` (clovaai/AdamP v0.3.0 semantics, formulas §7).

m, v as Adam; D = sqrt(v)/sqrt(1 − β2^t) + ε; u = (β1m + (1 − β1)g)/D (nesterov) or m/D;
(u, r) = Π(θ, g, u) for ndim > 1; θ ← θ(1 − ηλr) if λ > 0; θ ← θ − η/(1 − β1^t)·u.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def project(
    theta: np.ndarray, grad: np.ndarray, update: np.ndarray, delta: float, eps: float
) -> tuple[np.ndarray, bool]:
    """(update without its radial part where a view is scale-invariant, whether it was)."""
    if theta.ndim <= 1:
        return update, False
    for rows in (theta.shape[0], 1):  # channel view, then layer view
        t = theta.reshape(rows, -1)
        g = grad.reshape(rows, -1)
        t_norm = np.linalg.norm(t, axis=1)
        g_norm = np.linalg.norm(g, axis=1)
        cosine = np.abs((g * t).sum(axis=1)) / (np.maximum(g_norm, eps) * np.maximum(t_norm, eps))
        if cosine.max() < delta / np.sqrt(t.shape[1]):
            unit = t / (t_norm[:, None] + eps)
            u = update.reshape(rows, -1)
            u = u - unit * (unit * u).sum(axis=1, keepdims=True)
            return u.reshape(update.shape), True
    return update, False


def reference(spec: dict[str, Any], problem: Any, steps: int) -> list[dict[str, np.ndarray]]:
    lr = spec.get("lr", 1e-3)
    beta1, beta2 = spec.get("betas", (0.9, 0.999))
    eps = spec.get("eps", 1e-8)
    lam = spec.get("weight_decay", 0.0)
    delta = spec.get("delta", 0.1)
    wd_ratio = spec.get("wd_ratio", 0.1)
    nesterov = spec.get("nesterov", False)
    theta = {k: v.astype(np.float64).copy() for k, v in problem.init.items()}
    m = {k: np.zeros_like(v) for k, v in theta.items()}
    v = {k: np.zeros_like(x) for k, x in theta.items()}
    out = []
    for t in range(1, steps + 1):
        grad = problem.grad(theta)
        for k, g in grad.items():
            m[k] = beta1 * m[k] + (1 - beta1) * g
            v[k] = beta2 * v[k] + (1 - beta2) * g * g
            denom = np.sqrt(v[k]) / math.sqrt(1 - beta2**t) + eps
            u = (beta1 * m[k] + (1 - beta1) * g) / denom if nesterov else m[k] / denom
            u, invariant = project(theta[k], g, u, delta, eps)
            if lam > 0:
                theta[k] = theta[k] * (1 - lr * lam * (wd_ratio if invariant else 1.0))
            theta[k] = theta[k] - lr / (1 - beta1**t) * u
        out.append({k: x.copy() for k, x in theta.items()})
    return out
