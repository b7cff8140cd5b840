"""NumPy MoMo, written from the formulas file §11 (fabian-sp/MoMo semantics, single group)."""

from __future__ import annotations

import numpy as np


def reference(spec: dict, problem, steps: int) -> list[dict[str, np.ndarray]]:
    lr = spec.get("lr", 1.0)
    wd = spec.get("weight_decay", 0.0)
    beta = spec.get("beta", 0.9)
    lb_init = spec.get("lb", 0.0)
    bias_correction = spec.get("bias_correction", False)
    use_fstar = spec.get("use_fstar", False)

    theta = {k: v.copy() for k, v in problem.init.items()}
    d: dict[str, np.ndarray] = {}
    gam: dict[str, float] = {}
    f_avg = 0.0
    lb = lb_init
    out = []
    for k_step in range(1, steps + 1):
        f, grads = problem.loss(theta), problem.grad(theta)
        if k_step == 1:
            if bias_correction:
                f_avg = 0.0
                d = {k: np.zeros_like(x) for k, x in theta.items()}
                gam = dict.fromkeys(theta, 0.0)
            else:  # the first values
                f_avg = f
                d = {k: grads[k].copy() for k in theta}
                gam = {k: float(np.sum(theta[k] * grads[k])) for k in theta}
        f_avg = beta * f_avg + (1 - beta) * f
        for k in theta:
            d[k] = beta * d[k] + (1 - beta) * grads[k]
            gam[k] = beta * gam[k] + (1 - beta) * float(np.sum(theta[k] * grads[k]))
        rho = 1 - beta**k_step if bias_correction else 1.0
        dot = sum(float(np.sum(theta[k] * d[k])) for k in theta)
        gamma = sum(gam.values())
        norm = sum(float(np.sum(d[k] ** 2)) for k in theta)
        q = 1 + lr * wd
        if use_fstar:
            cap = q * f_avg + dot - q * gamma
            if cap < q * rho * lb:
                lb = max(cap / (2 * q * rho), lb_init)
        tau = min(lr / rho, max(q * (f_avg - rho * lb) + dot - q * gamma, 0.0) / norm)
        if use_fstar:
            h = f_avg + dot - gamma
            lb = max((h - 0.5 * tau * norm) / rho, lb_init)
        theta = {k: (x - tau * d[k]) / q for k, x in theta.items()}
        out.append({k: x.copy() for k, x in theta.items()})
    return out
