"""NumPy LAMB, written from the paper's v5 algorithm as the formulas file §13 states it."""

from __future__ import annotations

import numpy as np


def reference(spec: dict, problem, steps: int) -> list[dict[str, np.ndarray]]:
    lr = spec.get("lr", 1e-3)
    beta1, beta2 = spec.get("betas", (0.9, 0.999))
    eps = spec.get("eps", 1e-6)
    wd = spec.get("weight_decay", 0.01)
    correct = spec.get("bias_correction", True)
    bounds = spec.get("norm_bounds")
    exclude_1d = spec.get("exclude_1d", False)

    theta = {k: v.copy() for k, v in problem.init.items()}
    m = {k: np.zeros_like(x) for k, x in theta.items()}
    v = {k: np.zeros_like(x) for k, x in theta.items()}
    out = []
    for t in range(1, steps + 1):
        grads = problem.grad(theta)
        bc1, bc2 = (1 - beta1**t, 1 - beta2**t) if correct else (1.0, 1.0)
        for k, x in theta.items():
            g = grads[k]
            m[k] = beta1 * m[k] + (1 - beta1) * g
            v[k] = beta2 * v[k] + (1 - beta2) * g**2
            u = (m[k] / bc1) / (np.sqrt(v[k] / bc2) + eps) + wd * x
            phi = np.linalg.norm(x)
            if bounds is not None:
                phi = min(max(phi, bounds[0]), bounds[1])
            u_norm = np.linalg.norm(u)
            trust = phi / u_norm if phi > 0 and u_norm > 0 else 1.0
            if exclude_1d and x.ndim <= 1:
                trust = 1.0
            theta[k] = x - lr * trust * u
        out.append({k: x.copy() for k, x in theta.items()})
    return out
