"""NumPy Adafactor, from the paper's Algorithms 4/5 and the formulas file §9 (HF options)."""

from __future__ import annotations

import numpy as np


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def reference(spec: dict, problem, steps: int) -> list[dict[str, np.ndarray]]:
    relative = spec.get("relative_step", True)
    warmup = spec.get("warmup_init", False)
    scale = spec.get("scale_parameter", True)
    eps1, eps2 = spec.get("eps", (1e-30, 1e-3))
    d = spec.get("clip_threshold", 1.0)
    decay_rate = spec.get("decay_rate", -0.8)
    beta1 = spec.get("beta1", 0.0)
    lr = spec.get("lr", 1e-3)
    wd = spec.get("weight_decay", 0.0)

    theta = {k: v.copy() for k, v in problem.init.items()}
    state: dict[str, dict] = {k: {} for k in theta}
    out = []
    for t in range(1, steps + 1):
        grads = problem.grad(theta)
        for k, x in theta.items():
            g, s = grads[k], state[k]
            rho = min(1e-6 * t if warmup else 1e-2, 1 / np.sqrt(t)) if relative else lr
            alpha = max(eps2, rms(x)) * rho if scale else rho
            b2 = 1 - t**decay_rate
            if x.ndim >= 2:
                sq = g**2 + eps1
                s["R"] = b2 * s.get("R", 0.0) + (1 - b2) * sq.mean(axis=-1)
                s["C"] = b2 * s.get("C", 0.0) + (1 - b2) * sq.mean(axis=-2)
                # V̂ = R Cᵀ / mean(R), one matrix of the batch at a time
                v_hat = s["R"][..., :, None] * s["C"][..., None, :]
                v_hat = v_hat / s["R"].mean(axis=-1)[..., None, None]
            else:
                s["V"] = b2 * s.get("V", 0.0) + (1 - b2) * (g**2 + eps1)
                v_hat = s["V"]
            u = g / np.sqrt(v_hat)
            u = u / max(1.0, rms(u) / d)
            u = alpha * u
            if beta1 > 0:
                s["m"] = beta1 * s.get("m", 0.0) + (1 - beta1) * u
                u = s["m"]
            theta[k] = x - wd * alpha * x - u
        out.append({k: v.copy() for k, v in theta.items()})
    return out
