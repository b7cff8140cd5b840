"""NumPy reference for `frugal` (philip-zmushko/FRUGAL `GaloreAdamW`, SVD projection,
formulas §17; FRUGAL: Memory-Efficient Optimization by Reducing State Overhead for Scalable
Training).

Projected tensors (ndim ≥ 2 viewed as (out, rest), not `adamw_for` names): every update_gap steps
P ← r = round(density·side) top singular vectors (signed as the implementation fixes them) and,
with reset_statistics, m, v, t ← 0. θ ← θ(1 − ηλ) on every tensor first; R = project(G);
Adam on R with ε on the corrected root at lr η·s_p; θ ← θ + lift(Δ) − η·s_p·s_i·sign(G − lift(R))
(no residual when r ≥ min(rows, cols): G then lies in the subspace). Other tensors: plain AdamW.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import numpy as np

from tests.reference.galore import basis, down, side_of, up


def reference(spec: dict[str, Any], problem: Any, steps: int) -> list[dict[str, np.ndarray]]:
    lr = spec.get("lr", 1e-3)
    beta1, beta2 = spec.get("betas", (0.9, 0.999))
    eps = spec.get("eps", 1e-8)
    lam = spec.get("weight_decay", 0.01)
    density = spec.get("density", 0.25)
    gap = spec.get("update_gap", 200)
    reset = spec.get("reset_statistics", True)
    rule = spec.get("inactive_update_rule", "sign_sgd")
    s_i = spec.get("inactive_lr_scale", 1.0)
    s_p = spec.get("proj_params_lr_scale", 1.0)
    proj_side = spec.get("proj_side", "std")
    correct_bias = spec.get("correct_bias", True)
    patterns = spec.get("adamw_for", ["*embed*"])
    assert spec.get("proj_type", "svd") == "svd"
    theta = {k: v.astype(np.float64).copy() for k, v in problem.init.items()}
    projected = {
        k: x.ndim >= 2 and not any(fnmatchcase(k, p) for p in patterns) for k, x in theta.items()
    }
    bases: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    m: dict[str, np.ndarray] = {}
    v: dict[str, np.ndarray] = {}
    t: dict[str, int] = {}

    def adam(mk: np.ndarray, vk: np.ndarray, tk: int) -> np.ndarray:
        if not correct_bias:
            return mk / (np.sqrt(vk) + eps)
        return mk / (1 - beta1**tk) / (np.sqrt(vk) / np.sqrt(1 - beta2**tk) + eps)

    out = []
    for _ in range(steps):
        grad = problem.grad(theta)
        for k, g in grad.items():
            theta[k] = theta[k] * (1 - lr * lam)
            if not projected[k]:
                if k not in t:
                    t[k], m[k], v[k] = 0, np.zeros_like(g), np.zeros_like(g)
                t[k] += 1
                m[k] = beta1 * m[k] + (1 - beta1) * g
                v[k] = beta2 * v[k] + (1 - beta2) * g * g
                theta[k] = theta[k] - lr * adam(m[k], v[k], t[k])
                continue
            matrix = g.reshape(g.shape[0], -1)
            side = side_of(proj_side, *matrix.shape)
            full = matrix.shape[1] if side == "right" else matrix.shape[0]
            rank = min(round(density * full), min(matrix.shape))  # the SVD has no more vectors
            if k not in t or t[k] % gap == 0:
                bases[k] = basis(matrix, rank, side)
                if k not in t or reset:
                    shape = (matrix.shape[0], rank) if side == "right" else (rank, matrix.shape[1])
                    t[k], m[k], v[k] = 0, np.zeros(shape), np.zeros(shape)
            t[k] += 1
            r = down(matrix, *bases[k], side)
            m[k] = beta1 * m[k] + (1 - beta1) * r
            v[k] = beta2 * v[k] + (1 - beta2) * r * r
            update = up(-lr * s_p * adam(m[k], v[k], t[k]), *bases[k], side)
            if rule != "no" and rank < min(matrix.shape):  # else G lies in the subspace
                resid = matrix - up(r, *bases[k], side)
                step = np.sign(resid) if rule == "sign_sgd" else resid
                update = update - lr * s_p * s_i * step
            theta[k] = theta[k] + update.reshape(g.shape)
        out.append({k: x.copy() for k, x in theta.items()})
    return out
