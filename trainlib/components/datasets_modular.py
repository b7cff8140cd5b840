"""Modular arithmetic tables `a ∘ b mod p`, the grokking data set."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from pydantic import Field, model_validator

from trainlib.components.datasets_common import (
    CORRUPTION_STREAM,
    SPLIT_STREAM,
    LabelNoiseSettings,
    noisy_labels,
    stream,
)
from trainlib.data import DataBundle, DataInfo
from trainlib.registries import DATASETS

Operation = Literal[
    "add", "sub", "mul", "div", "div_or_sub", "x2+y2", "x2+xy+y2", "x2+xy+y2+x", "x3+xy", "x3+xy2+y"
]
Table = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def _inverse(b: torch.Tensor, p: int) -> torch.Tensor:
    """b^(p-2) mod p: the inverse of b ≠ 0 for a prime p (Fermat), by square-and-multiply."""
    result = torch.ones_like(b)
    base, e = b % p, p - 2
    while e:
        if e & 1:
            result = result * base % p
        base = base * base % p
        e >>= 1
    return result


# Power et al., Table 1 (binary operations on Z_p; the S5 permutation groups are left out).
OPERATIONS: dict[str, Table] = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: a * b % p,
    "div": lambda a, b, p: a * _inverse(b, p) % p,
    "div_or_sub": lambda a, b, p: torch.where(b % 2 == 1, a * _inverse(b, p) % p, (a - b) % p),
    "x2+y2": lambda a, b, p: (a * a + b * b) % p,
    "x2+xy+y2": lambda a, b, p: (a * a + a * b + b * b) % p,
    "x2+xy+y2+x": lambda a, b, p: (a * a + a * b + b * b + a) % p,
    "x3+xy": lambda a, b, p: (a * a % p * a + a * b) % p,
    "x3+xy2+y": lambda a, b, p: (a * a % p * a + a * (b * b % p) + b) % p,
}
DIVIDES = {"div", "div_or_sub"}


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % k for k in range(2, math.isqrt(n) + 1))


class ModularArithmeticSettings(LabelNoiseSettings):
    """Every equation `a ∘ b = c (mod p)`, split at random into training and validation pairs."""

    batch_size: int = Field(512, ge=1, le=65536, description="Power et al.: min(512, N_train/2)")
    p: int = Field(97, ge=2, le=1000, description="the modulus")
    operation: Operation = "add"
    train_fraction: float = Field(
        0.5, gt=0, lt=1, description="share of all equations used for training"
    )
    val_fraction: float | None = Field(
        None, gt=0, lt=1, description="share of all equations validated on; None: all the rest"
    )
    label_corruption: float = Field(
        0.0,
        ge=0,
        le=1,
        description="To grok or not to grok: this share of training labels redrawn uniformly "
        "from [0, p) (a redrawn label may be the true one)",
    )
    encoding: Literal["tokens", "one_hot"] = Field(
        "tokens",
        description="tokens: [a, op, b, =] ids for a transformer (vocabulary p + 2); one_hot: "
        "concat(one_hot(a), one_hot(b)), 2p features for an MLP (Doshi et al.)",
    )

    @model_validator(mode="after")
    def _valid_table(self) -> ModularArithmeticSettings:
        if self.operation in DIVIDES and not _is_prime(self.p):
            raise ValueError(f"division needs a prime modulus; {self.p} is not prime")
        if self.val_fraction is not None and self.train_fraction + self.val_fraction > 1:
            raise ValueError("train_fraction + val_fraction must be at most 1")
        return self


def equation_table(p: int, operation: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a, b, c) for every pair in Z_p × Z_p (b ≠ 0 where the operation divides)."""
    a, b = torch.cartesian_prod(torch.arange(p), torch.arange(p)).unbind(1)
    if operation in DIVIDES:
        a, b = a[b != 0], b[b != 0]
    return a, b, OPERATIONS[operation](a, b, p)


def encode(a: torch.Tensor, b: torch.Tensor, p: int, encoding: str) -> torch.Tensor:
    """Token ids [a, op, b, =] (op = p, = is p + 1), or concatenated one-hot vectors of a and b."""
    if encoding == "one_hot":
        eye = torch.eye(p)
        return torch.cat([eye[a], eye[b]], dim=1)
    return torch.stack([a, torch.full_like(a, p), b, torch.full_like(a, p + 1)], dim=1)


def corrupt_labels(labels: torch.Tensor, p: int, fraction: float, seed: int) -> torch.Tensor:
    """Doshi et al.: the first floor(ξ·N) training labels (the split is already random) are
    drawn uniformly from [0, p), so about ξ(1 − 1/p) of them end up wrong."""
    n = math.floor(fraction * len(labels))
    out = labels.clone()
    out[:n] = torch.randint(0, p, (n,), generator=stream(seed, CORRUPTION_STREAM))
    return out


@DATASETS.register(
    "modular_arithmetic",
    settings=ModularArithmeticSettings,
    summary="a ∘ b mod p equations (grokking), tokens or one-hot, optional label corruption",
    paper="Grokking: Generalization Beyond Overfitting on Small Algorithmic Datasets (Power et "
    "al., 2022); To grok or not to grok (Doshi et al., 2023) for label_corruption",
)
def build_modular_arithmetic(s: ModularArithmeticSettings, seed: int) -> DataBundle:
    a, b, c = equation_table(s.p, s.operation)
    n = len(c)
    perm = torch.randperm(n, generator=stream(seed, SPLIT_STREAM))
    n_train = max(1, math.floor(s.train_fraction * n))
    n_val = n - n_train if s.val_fraction is None else max(1, round(s.val_fraction * n))
    train_idx, val_idx = perm[:n_train], perm[n_train : n_train + n_val]
    x = encode(a, b, s.p, s.encoding)
    train_y = c[train_idx]
    if s.label_corruption > 0:
        train_y = corrupt_labels(train_y, s.p, s.label_corruption, seed)
    train_y = noisy_labels(train_y, s.p, s, seed)
    if s.encoding == "one_hot":
        info = DataInfo((2 * s.p,), s.p)
    else:
        info = DataInfo((4,), s.p, vocab_size=s.p + 2)
    return DataBundle(x[train_idx], train_y, x[val_idx], c[val_idx], info, s.batch_size)
