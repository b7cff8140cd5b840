"""Per-sample loss formulas written out with Python floats and loops: the tests' oracle.

Independent of the library: no torch, one sample at a time, each formula as the paper states it.
A soft target's reference is the expectation `Σ_k y_k ℓ(z, k)` over these hard-label losses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

Vec = Sequence[float]
HardLoss = Callable[[Vec, int], float]


def softmax(z: Vec) -> list[float]:
    m = max(z)
    e = [math.exp(v - m) for v in z]
    total = sum(e)
    return [v / total for v in e]


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def ce(z: Vec, y: int) -> float:
    return -math.log(softmax(z)[y])


def poly1(eps: float) -> HardLoss:
    return lambda z, y: ce(z, y) + eps * (1 - softmax(z)[y])


def focal_softmax(gamma: float, alpha: float = 1.0, eps: float = 0.0) -> HardLoss:
    def f(z: Vec, y: int) -> float:
        pt = softmax(z)[y]
        return -alpha * (1 - pt) ** gamma * math.log(pt) + eps * (1 - pt) ** (gamma + 1)

    return f


def focal_sigmoid(gamma: float, alpha: float | None = None, eps: float = 0.0) -> HardLoss:
    def f(z: Vec, y: int) -> float:
        total = 0.0
        for c, zc in enumerate(z):
            p = sigmoid(zc)
            pt = p if c == y else 1 - p
            at = 1.0 if alpha is None else (alpha if c == y else 1 - alpha)
            total += -at * (1 - pt) ** gamma * math.log(pt) + eps * (1 - pt) ** (gamma + 1)
        return total

    return f


def bce(z: Vec, y: int) -> float:
    return sum(
        -math.log(sigmoid(zc)) if c == y else -math.log(1 - sigmoid(zc)) for c, zc in enumerate(z)
    )


def asymmetric(gamma_pos: float, gamma_neg: float, clip: float) -> HardLoss:
    def f(z: Vec, y: int) -> float:
        total = 0.0
        for c, zc in enumerate(z):
            p = sigmoid(zc)
            if c == y:
                total += -((1 - p) ** gamma_pos) * math.log(p)
            else:
                pm = max(p - clip, 0.0)
                total += -(pm**gamma_neg) * math.log(1 - pm)
        return total

    return f


def squentropy(z: Vec, y: int) -> float:
    return ce(z, y) + sum(v * v for j, v in enumerate(z) if j != y) / (len(z) - 1)


def s(x: float) -> float:
    return x + 1 if x >= 0 else 1 / (1 - x)


def stablemax(z: Vec, y: int) -> float:
    return -math.log(s(z[y]) / sum(s(v) for v in z))


def logit_adjusted(tau: float, priors: Vec) -> HardLoss:
    total = sum(priors)
    return lambda z, y: ce(
        [v + tau * math.log(p / total) for v, p in zip(z, priors, strict=True)], y
    )


def vs_loss(gamma: float, tau: float, counts: Vec) -> HardLoss:
    n_max, n = max(counts), sum(counts)
    delta = [(c / n_max) ** gamma for c in counts]
    iota = [tau * math.log(c / n) for c in counts]
    return lambda z, y: ce([d * v + i for d, v, i in zip(delta, z, iota, strict=True)], y)


def effective_number_weights(counts: Vec, beta: float) -> list[float]:
    raw = [(1 - beta) / (1 - beta**c) for c in counts]
    return [w * len(raw) / sum(raw) for w in raw]


def inverse_frequency_weights(counts: Vec) -> list[float]:
    raw = [1 / c for c in counts]
    return [w * len(raw) / sum(raw) for w in raw]


def weighted_ce(weights: Vec) -> HardLoss:
    return lambda z, y: weights[y] * ce(z, y)


def gce(q: float, k: float | None = None) -> HardLoss:
    def f(z: Vec, y: int) -> float:
        p = softmax(z)[y]
        if k is not None and p <= k:
            p = k
        return (1 - p**q) / q

    return f


def mae(z: Vec, y: int) -> float:
    return sum(abs((1.0 if c == y else 0.0) - p) for c, p in enumerate(softmax(z)))


def mse(z: Vec, y: int) -> float:
    return sum((v - (1.0 if c == y else 0.0)) ** 2 for c, v in enumerate(z)) / len(z)


def huber(delta: float) -> HardLoss:
    def h(r: float) -> float:
        return 0.5 * r * r if abs(r) <= delta else delta * (abs(r) - 0.5 * delta)

    return lambda z, y: sum(h(v - (1.0 if c == y else 0.0)) for c, v in enumerate(z)) / len(z)


def batch_hard(loss: HardLoss, logits: list[list[float]], labels: list[int]) -> float:
    return sum(loss(z, y) for z, y in zip(logits, labels, strict=True)) / len(labels)


def batch_soft(loss: HardLoss, logits: list[list[float]], targets: list[list[float]]) -> float:
    total = 0.0
    for z, row in zip(logits, targets, strict=True):
        total += sum(w * loss(z, k) for k, w in enumerate(row))
    return total / len(targets)
