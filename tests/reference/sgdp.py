"""NumPy reference for `sgdp` (clovaai/AdamP v0.3.0 adamp/sgdp.py semantics, formulas §7).

b ← μb + (1 − τ)g from b = 0 (dampening applies at t = 1); u = g + μb (nesterov) or b;
(u, r) = Π(θ, g, u) for ndim > 1; θ ← θ(1 − ηλr/(1 − μ)) if λ ≠ 0; θ ← θ − ηu.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.reference.adamp import project


def reference(spec: dict[str, Any], problem: Any, steps: int) -> list[dict[str, np.ndarray]]:
    lr = spec.get("lr", 0.1)
    mu = spec.get("momentum", 0.0)
    tau = spec.get("dampening", 0.0)
    lam = spec.get("weight_decay", 0.0)
    nesterov = spec.get("nesterov", False)
    eps = spec.get("eps", 1e-8)
    delta = spec.get("delta", 0.1)
    wd_ratio = spec.get("wd_ratio", 0.1)
    theta = {k: v.astype(np.float64).copy() for k, v in problem.init.items()}
    buf = {k: np.zeros_like(v) for k, v in theta.items()}
    out = []
    for _ in range(steps):
        grad = problem.grad(theta)
        for k, g in grad.items():
            buf[k] = mu * buf[k] + (1 - tau) * g
            u = g + mu * buf[k] if nesterov else buf[k]
            u, invariant = project(theta[k], g, u, delta, eps)
            if lam != 0:
                ratio = wd_ratio if invariant else 1.0
                theta[k] = theta[k] * (1 - lr * lam * ratio / (1 - mu))
            theta[k] = theta[k] - lr * u
        out.append({k: x.copy() for k, x in theta.items()})
    return out
