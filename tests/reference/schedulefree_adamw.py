"""NumPy reference for `schedulefree_adamw` (facebookresearch/schedule_free ≥ 1.3, the explicit
x/y/z form of `AdamWScheduleFreeReference`, formulas §20; The Road Less Scheduled).

Gradients are taken at y; the returned weights are x (what the model holds in eval mode).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def reference(spec: dict[str, Any], problem: Any, steps: int) -> list[dict[str, np.ndarray]]:
    lr = spec.get("lr", 0.0025)
    beta1, beta2 = spec.get("betas", (0.9, 0.999))
    eps = spec.get("eps", 1e-8)
    lam = spec.get("weight_decay", 0.0)
    warmup = spec.get("warmup_steps", 0)
    r = spec.get("r", 0.0)
    power = spec.get("weight_lr_power", 2.0)
    y = {k: v.astype(np.float64).copy() for k, v in problem.init.items()}
    x = {k: v.copy() for k, v in y.items()}
    z = {k: v.copy() for k, v in y.items()}
    v = {k: np.zeros_like(a) for k, a in y.items()}
    lr_max, weight_sum = -1.0, 0.0
    out = []
    for k in range(steps):
        lr_k = lr * ((k + 1) / warmup if k < warmup else 1.0)
        lr_max = max(lr_max, lr_k)
        weight = (k + 1) ** r * lr_max**power
        weight_sum += weight
        c = weight / weight_sum
        grad = problem.grad(y)
        for key, g in grad.items():
            v[key] = beta2 * v[key] + (1 - beta2) * g * g
            denom = np.sqrt(v[key] / (1 - beta2 ** (k + 1))) + eps
            z[key] = z[key] - lr_k * (g / denom + lam * y[key])
            x[key] = (1 - c) * x[key] + c * z[key]
            y[key] = beta1 * x[key] + (1 - beta1) * z[key]
        out.append({key: a.copy() for key, a in x.items()})
    return out
