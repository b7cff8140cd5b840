"""NumPy MoMo-Adam, written from the formulas file §11 (fabian-sp/MoMo semantics, single group)."""

from __future__ import annotations

import numpy as np


def reference(spec: dict, problem, steps: int) -> list[dict[str, np.ndarray]]:
    lr = spec.get("lr", 1e-2)
    wd = spec.get("weight_decay", 0.0)
    beta1, beta2 = spec.get("betas", (0.9, 0.999))
    eps = spec.get("eps", 1e-8)
    lb_init = spec.get("lb", 0.0)
    divide = spec.get("divide", True)
    use_fstar = spec.get("use_fstar", False)

    theta = {k: v.copy() for k, v in problem.init.items()}
    d = {k: np.zeros_like(x) for k, x in theta.items()}
    v = {k: np.zeros_like(x) for k, x in theta.items()}
    gam = dict.fromkeys(theta, 0.0)
    f_avg = 0.0
    lb = lb_init
    out = []
    for k_step in range(1, steps + 1):
        f, grads = problem.loss(theta), problem.grad(theta)
        for k, x in theta.items():
            g = grads[k]
            d[k] = beta1 * d[k] + (1 - beta1) * g
            v[k] = beta2 * v[k] + (1 - beta2) * g**2
            gam[k] = beta1 * gam[k] + (1 - beta1) * float(np.sum(x * g))
        f_avg = beta1 * f_avg + (1 - beta1) * f
        bc1 = 1 - beta1**k_step
        D = {k: np.sqrt(v[k] / (1 - beta2**k_step)) + eps for k in theta}
        dot = sum(float(np.sum(theta[k] * d[k])) for k in theta)
        gamma = sum(gam.values())
        norm = sum(float(np.sum(d[k] ** 2 / D[k])) for k in theta)
        q = 1 + lr * wd
        if use_fstar:
            cap = q * f_avg + dot - q * gamma
            if cap < q * bc1 * lb:
                lb = max(cap / (2 * q * bc1), lb_init)
        tau = min(lr / bc1, max(q * (f_avg - bc1 * lb) + dot - q * gamma, 0.0) / norm)
        if use_fstar:
            h = f_avg + dot - gamma
            lb = max((h - 0.5 * tau * norm) / bc1, lb_init)
        for k, x in theta.items():
            if divide:
                theta[k] = (x - tau * d[k] / D[k]) / q
            else:
                theta[k] = x * (1 - lr * wd) - tau * d[k] / D[k]
        out.append({k: x.copy() for k, x in theta.items()})
    return out
