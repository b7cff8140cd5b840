"""NumPy reference for `galore` (jiaweizzhao/GaLore `GaLoreAdamW` + `GaLoreProjector`,
formulas §18; GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection).

Projected (ndim ≥ 2, >2-D viewed as (out, rest), not an `adamw_for` name): P from the SVD of the
current gradient when the step count before the step is a multiple of update_proj_gap (each
singular vector signed so its largest-magnitude entry is positive, as the implementation fixes
it); m, v on R = project(G) and never reset; θ ← θ − η·sqrt(1−β2^t)/(1−β1^t)·α·back(m/(sqrt(v)+ε));
then θ ← θ − ηλθ (decay after the update). Other tensors: the same without projection and α.
"""

from __future__ import annotations

import math
from fnmatch import fnmatchcase
from typing import Any

import numpy as np


def signed(vectors: np.ndarray, axis: int) -> np.ndarray:
    idx = np.expand_dims(np.abs(vectors).argmax(axis=axis), axis)
    signs = np.sign(np.take_along_axis(vectors, idx, axis=axis))
    return vectors * np.where(signs == 0, 1.0, signs)


def side_of(proj_type: str, rows: int, cols: int) -> str:
    if proj_type == "std":
        return "right" if rows >= cols else "left"
    if proj_type == "reverse_std":
        return "left" if rows >= cols else "right"
    return proj_type


def basis(g: np.ndarray, rank: int, side: str) -> tuple[np.ndarray, np.ndarray]:
    u, _, vh = np.linalg.svd(g, full_matrices=False)
    return signed(u[:, :rank], axis=0), signed(vh[:rank, :], axis=1)


def down(g: np.ndarray, left: np.ndarray, right: np.ndarray, side: str) -> np.ndarray:
    if side == "right":
        return g @ right.T
    if side == "left":
        return left.T @ g
    return left.T @ g @ right.T


def up(low: np.ndarray, left: np.ndarray, right: np.ndarray, side: str) -> np.ndarray:
    if side == "right":
        return low @ right
    if side == "left":
        return left @ low
    return left @ low @ right


def reference(spec: dict[str, Any], problem: Any, steps: int) -> list[dict[str, np.ndarray]]:
    lr = spec.get("lr", 0.01)
    beta1, beta2 = spec.get("betas", (0.9, 0.999))
    eps = spec.get("eps", 1e-6)
    lam = spec.get("weight_decay", 0.0)
    rank = spec.get("rank", 128)
    gap = spec.get("update_proj_gap", 200)
    scale = spec.get("scale", 0.25)
    proj_type = spec.get("proj_type", "std")
    patterns = spec.get("adamw_for", ["*embed*"])
    theta = {k: v.astype(np.float64).copy() for k, v in problem.init.items()}
    projected = {
        k: x.ndim >= 2 and not any(fnmatchcase(k, p) for p in patterns) for k, x in theta.items()
    }
    bases: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    m: dict[str, np.ndarray] = {}
    v: dict[str, np.ndarray] = {}
    out = []
    for t in range(1, steps + 1):
        grad = problem.grad(theta)
        size = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        for k, g in grad.items():
            if projected[k]:
                matrix = g.reshape(g.shape[0], -1)
                side = side_of(proj_type, *matrix.shape)
                if (t - 1) % gap == 0:
                    bases[k] = basis(matrix, rank, side)
                r = down(matrix, *bases[k], side)
            else:
                r = g
            if k not in m:
                m[k], v[k] = np.zeros_like(r), np.zeros_like(r)
            m[k] = beta1 * m[k] + (1 - beta1) * r
            v[k] = beta2 * v[k] + (1 - beta2) * r * r
            n = m[k] / (np.sqrt(v[k]) + eps)
            if projected[k]:
                n = scale * up(n, *bases[k], side).reshape(g.shape)
            theta[k] = theta[k] - size * n
            theta[k] = theta[k] - lr * lam * theta[k]
        out.append({k: x.copy() for k, x in theta.items()})
    return out
