"""NumPy FAdam, written from the formulas file §10 (the pytorch-optimizer 4.1 structure)."""

from __future__ import annotations

import numpy as np


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def reference(spec: dict, problem, steps: int) -> list[dict[str, np.ndarray]]:
    lr = spec.get("lr", 1e-3)
    beta1, beta2 = spec.get("betas", (0.9, 0.999))
    eps = spec.get("eps", 1e-8)
    c = spec.get("clip_threshold", 1.0)
    power = spec.get("p", 0.5)
    wd = spec.get("weight_decay", 0.1)

    theta = {k: v.copy() for k, v in problem.init.items()}
    fisher = {k: np.zeros_like(v) for k, v in theta.items()}
    mom = {k: np.zeros_like(v) for k, v in theta.items()}
    out = []
    for t in range(1, steps + 1):
        grads = problem.grad(theta)
        b2 = beta2 * (1 - beta2 ** (t - 1)) / (1 - beta2**t)
        for k, x in theta.items():
            g = grads[k]
            fisher[k] = b2 * fisher[k] + (1 - b2) * g**2
            eps_t = eps * min(1.0, rms(g))
            denom = fisher[k] ** power + eps_t
            nat = g / denom
            nat = nat / max(1.0, rms(nat) / c)
            mom[k] = beta1 * mom[k] + (1 - beta1) * nat
            w = x / denom
            w = w / max(1.0, rms(w) / c)
            theta[k] = x - lr * (mom[k] + wd * w)
        out.append({k: v.copy() for k, v in theta.items()})
    return out
