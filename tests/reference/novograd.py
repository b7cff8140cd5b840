"""NumPy NovoGrad, written from the formulas file §12 (NeMo semantics, paper Alg. 1)."""

from __future__ import annotations

import numpy as np


def reference(spec: dict, problem, steps: int) -> list[dict[str, np.ndarray]]:
    lr = spec.get("lr", 1e-3)
    beta1, beta2 = spec.get("betas", (0.95, 0.98))
    eps = spec.get("eps", 1e-8)
    wd = spec.get("weight_decay", 0.0)
    averaging = spec.get("grad_averaging", False)
    amsgrad = spec.get("amsgrad", False)
    luc = spec.get("luc", False)
    trust, luc_eps = spec.get("luc_trust", 1e-3), spec.get("luc_eps", 1e-8)

    theta = {k: v.copy() for k, v in problem.init.items()}
    v = dict.fromkeys(theta, 0.0)
    v_max = dict.fromkeys(theta, 0.0)
    m = {k: np.zeros_like(x) for k, x in theta.items()}
    out = []
    for _ in range(steps):
        grads = problem.grad(theta)
        for k, x in theta.items():
            g = grads[k]
            n = float(np.sum(g**2))
            v[k] = n if v[k] == 0 else beta2 * v[k] + (1 - beta2) * n
            v_max[k] = max(v_max[k], v[k])
            second = v_max[k] if amsgrad else v[k]
            u = g / (np.sqrt(second) + eps) + wd * x
            if averaging:
                u = (1 - beta1) * u
            m[k] = beta1 * m[k] + u
            rate = lr
            if luc:
                rate = min(lr, trust * np.linalg.norm(x) / (np.linalg.norm(m[k]) + luc_eps))
            theta[k] = x - rate * m[k]
        out.append({k: x.copy() for k, x in theta.items()})
    return out
