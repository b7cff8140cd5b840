"""modular_arithmetic: the equation tables of Power et al. and Doshi et al.'s label corruption."""

from __future__ import annotations

import math

import pytest
import torch

from trainlib.components.datasets_modular import OPERATIONS, equation_table
from trainlib.registries import DATASETS
from trainlib.spec import SpecError, parse_spec

# Plain-integer references (Python's pow(b, -1, p) is the modular inverse).
REFERENCE = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
    "div": lambda a, b, p: (a * pow(b, -1, p)) % p,
    "div_or_sub": lambda a, b, p: (a * pow(b, -1, p)) % p if b % 2 else (a - b) % p,
    "x2+y2": lambda a, b, p: (a**2 + b**2) % p,
    "x2+xy+y2": lambda a, b, p: (a**2 + a * b + b**2) % p,
    "x2+xy+y2+x": lambda a, b, p: (a**2 + a * b + b**2 + a) % p,
    "x3+xy": lambda a, b, p: (a**3 + a * b) % p,
    "x3+xy2+y": lambda a, b, p: (a**3 + a * b**2 + b) % p,
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_table_matches_integer_arithmetic(operation: str) -> None:
    p = 31
    a, b, c = equation_table(p, operation)
    divides = operation in ("div", "div_or_sub")
    assert len(c) == (p * (p - 1) if divides else p * p)
    expected = [REFERENCE[operation](x, y, p) for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    assert c.tolist() == expected


def test_division_inverts_multiplication_at_the_default_modulus() -> None:
    a, b, c = equation_table(97, "div")
    assert torch.equal(c * b % 97, a)
    assert (b != 0).all()


def test_tokens_split_and_info() -> None:
    data = DATASETS.build({"name": "modular_arithmetic"}, seed=0)
    p = 97
    assert data.info.vocab_size == p + 2 and data.info.num_classes == p
    assert data.info.input_shape == (4,) and data.train_x.dtype == torch.long
    assert len(data.train_x) == math.floor(0.5 * p * p)
    assert len(data.train_x) + len(data.val_x) == p * p
    for x, y in ((data.train_x, data.train_y), (data.val_x, data.val_y)):
        assert (x[:, 1] == p).all() and (x[:, 3] == p + 1).all()
        assert torch.equal((x[:, 0] + x[:, 2]) % p, y)
    # train and validation equations are disjoint and cover the table
    pairs = torch.cat([data.train_x, data.val_x])[:, [0, 2]]
    assert len({tuple(r) for r in pairs.tolist()}) == p * p


def test_val_fraction_takes_part_of_the_rest() -> None:
    s = {"name": "modular_arithmetic", "p": 23, "train_fraction": 0.3, "val_fraction": 0.2}
    data = DATASETS.build(s, seed=1)
    assert len(data.train_x) == math.floor(0.3 * 529) and len(data.val_x) == round(0.2 * 529)
    with pytest.raises(SpecError, match="at most 1"):
        parse_spec(_job({**s, "val_fraction": 0.8}))


def test_one_hot_is_doshi_et_al_concatenation() -> None:
    s = {"name": "modular_arithmetic", "p": 13, "encoding": "one_hot", "operation": "mul"}
    data = DATASETS.build(s, seed=0)
    assert data.info.input_shape == (26,) and data.info.vocab_size is None
    a, b = data.train_x[:, :13].argmax(1), data.train_x[:, 13:].argmax(1)
    assert torch.equal(data.train_x.sum(1), torch.full((len(a),), 2.0))
    assert torch.equal(a * b % 13, data.train_y)


def test_label_corruption_redraws_the_first_share_uniformly() -> None:
    base = {"name": "modular_arithmetic", "p": 97}
    clean = DATASETS.build(base, seed=4)
    corrupt = DATASETS.build({**base, "label_corruption": 0.3}, seed=4)
    n = math.floor(0.3 * len(clean.train_y))
    assert torch.equal(corrupt.train_x, clean.train_x)
    assert torch.equal(corrupt.train_y[n:], clean.train_y[n:])
    assert torch.equal(corrupt.val_y, clean.val_y)  # the test set stays clean
    wrong = int((corrupt.train_y[:n] != clean.train_y[:n]).sum())
    # a redrawn label keeps the true class with probability 1/p: about n(1 − 1/p) are wrong
    assert abs(wrong - n * (1 - 1 / 97)) < 5 * math.sqrt(n / 97)


def test_division_needs_a_prime() -> None:
    with pytest.raises(SpecError, match="prime"):
        parse_spec(_job({"name": "modular_arithmetic", "p": 96, "operation": "div"}))


def _job(data: dict[str, object]) -> dict[str, object]:
    return {
        "data": data,
        "model": {"name": "mlp"},
        "optimizer": {"name": "adamw"},
        "train": {"steps": 1},
    }
