"""NumPy reference for `adamw` with both decay conventions (formulas §4).

coupled_lr (torch AdamW): θ ← θ(1 − η_t λ); independent (Wortsman et al., Small-scale proxies for
large-scale Transformer training instabilities): θ ← θ(1 − (η_t/η_max) λ). Then the Adam step with
ε on the bias-corrected root: θ ← θ − η_t/(1 − β1^t) · m/(sqrt(v)/sqrt(1 − β2^t) + ε).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np


def reference(
    spec: dict[str, Any],
    problem: Any,
    steps: int,
    schedule: Callable[[int], float] | None = None,
) -> list[dict[str, np.ndarray]]:
    """`schedule(t − 1)` multiplies the lr at step t, so η_max = lr."""
    lr = spec.get("lr", 1e-3)
    beta1, beta2 = spec.get("betas", (0.9, 0.999))
    eps = spec.get("eps", 1e-8)
    amsgrad = spec.get("amsgrad", False)
    independent = spec.get("decay", "coupled_lr") == "independent"
    lam = spec.get("weight_decay", 1e-4 if independent else 1e-2)
    theta = {k: v.astype(np.float64).copy() for k, v in problem.init.items()}
    m = {k: np.zeros_like(v) for k, v in theta.items()}
    v = {k: np.zeros_like(x) for k, x in theta.items()}
    v_max = {k: np.zeros_like(x) for k, x in theta.items()}
    out = []
    for t in range(1, steps + 1):
        s = schedule(t - 1) if schedule else 1.0
        eta = lr * s
        grad = problem.grad(theta)
        for k, g in grad.items():
            theta[k] = theta[k] * (1 - (s * lam if independent else eta * lam))
            m[k] = beta1 * m[k] + (1 - beta1) * g
            v[k] = beta2 * v[k] + (1 - beta2) * g * g
            second = v[k]
            if amsgrad:
                v_max[k] = np.maximum(v_max[k], v[k])
                second = v_max[k]
            denom = np.sqrt(second) / math.sqrt(1 - beta2**t) + eps
            theta[k] = theta[k] - eta / (1 - beta1**t) * m[k] / denom
        out.append({k: x.copy() for k, x in theta.items()})
    return out
