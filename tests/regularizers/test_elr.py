"""elr (Early-Learning Regularization): the formulas file's worked example (§3.4), the target
update, gradients, state and bit-identical resume, the digits label-noise option, and ELR beating
plain cross-entropy on clean validation labels under 40 % symmetric noise (the two examples).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from tests.regularizers.helpers import (
    assert_bad_setting,
    assert_resumes_bit_identically,
    minimal_job,
    spec_error_paths,
    train_minimal_job,
)
from trainlib import CollectingSink, parse_spec, train
from trainlib.data import DataInfo
from trainlib.registries import DATASETS, REGULARIZERS
from trainlib.regularizers import PenaltyContext, RegularizerStack, SetupContext
from trainlib.regularizers.elr import Elr, elr_term

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
F64 = torch.float64


def setup(train_size: int = 80, classes: int = 4) -> SetupContext:
    return SetupContext(
        info=DataInfo((12,), classes),
        total_steps=100,
        steps_per_epoch=10,
        batch_size=8,
        train_size=train_size,
        seed=0,
    )


def build(raw: dict[str, Any] | None = None, **kw: Any) -> Elr:
    settings = REGULARIZERS.settings_for(raw or {"name": "elr"})
    reg = RegularizerStack.build([settings], setup(**kw)).items[0]
    assert isinstance(reg, Elr)
    return reg


def context(logits: torch.Tensor, indices: list[int], step: int) -> PenaltyContext:
    targets = torch.zeros(len(indices), dtype=torch.long)
    return PenaltyContext(
        nn.Identity(), logits, logits, targets, torch.tensor(indices), step, logits.sum()
    )


# --- the formula ----------------------------------------------------------------------------------


def test_worked_example_first_visit() -> None:
    reg = build({"name": "elr", "strength": 3.0, "beta": 0.7}, train_size=5, classes=3)
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]], dtype=F64))
    value = reg.penalty(context(logits, [2], 0))
    torch.testing.assert_close(reg.targets[2], torch.tensor([0.21, 0.06, 0.03], dtype=F64))
    assert torch.equal(reg.targets[[0, 1, 3, 4]], torch.zeros(4, 3, dtype=F64))
    torch.testing.assert_close(
        value, torch.tensor(3 * math.log(1 - 0.162), dtype=F64), rtol=1e-6, atol=0
    )
    assert abs(math.log(0.838) - (-0.176737)) < 1e-6 and abs(float(value) - (-0.530212)) < 1e-6


def test_second_visit_moves_the_target_by_beta() -> None:
    reg = build({"name": "elr", "beta": 0.7}, train_size=5, classes=3)
    first = torch.log(torch.tensor([[0.7, 0.2, 0.1]], dtype=F64))
    second = torch.log(torch.tensor([[0.1, 0.3, 0.6]], dtype=F64))
    reg.penalty(context(first, [4], 0))
    value = reg.penalty(context(second, [4], 1))
    t = 0.7 * torch.tensor([0.21, 0.06, 0.03], dtype=F64) + 0.3 * torch.tensor(
        [0.1, 0.3, 0.6], dtype=F64
    )
    torch.testing.assert_close(reg.targets[4], t, rtol=1e-12, atol=0)
    p = torch.tensor([0.1, 0.3, 0.6], dtype=F64)
    torch.testing.assert_close(value, 3 * torch.log(1 - (p * t).sum()), rtol=1e-12, atol=0)


def test_predictions_are_clamped_and_renormalised() -> None:
    reg = build({"name": "elr", "beta": 0.0}, train_size=2, classes=3)
    logits = torch.tensor([[40.0, 0.0, 0.0]], dtype=F64)  # softmax ≈ [1, 4e-18, 4e-18]
    reg.penalty(context(logits, [0], 0))
    clamped = torch.tensor([1 - 1e-4, 1e-4, 1e-4], dtype=F64)
    torch.testing.assert_close(reg.targets[0], clamped / clamped.sum(), rtol=1e-12, atol=0)


def test_targets_move_once_per_step() -> None:
    reg = build(train_size=6, classes=3)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 3, generator=g, dtype=F64)
    a = reg.penalty(context(logits, [0, 2, 5], 7))
    table = reg.targets.clone()
    # a step strategy's second pass on the same step: same targets, other logits
    b = reg.penalty(context(logits * 2, [0, 2, 5], 7))
    assert torch.equal(reg.targets, table)
    assert not torch.equal(a, b)
    reg.penalty(context(logits, [0, 2, 5], 8))
    assert not torch.equal(reg.targets, table)


def test_gradient_flows_only_through_p() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 4, generator=g, dtype=F64, requires_grad=True)
    targets = F.softmax(torch.randn(5, 4, generator=g, dtype=F64), 1) * 0.9
    assert torch.autograd.gradcheck(lambda z: elr_term(z, targets), (logits,))

    reg = build(train_size=5, classes=4)
    value = reg.penalty(context(logits, [0, 1, 2, 3, 4], 0))
    (grad,) = torch.autograd.grad(value, logits)
    t = reg.targets.detach()
    expected = torch.autograd.grad(3.0 * elr_term(logits, t), logits)[0]
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=0)


def test_the_term_is_negative_and_falls_as_predictions_agree_with_targets() -> None:
    targets = torch.tensor([[0.8, 0.1, 0.1]], dtype=F64)
    agree = elr_term(torch.tensor([[3.0, 0.0, 0.0]], dtype=F64), targets)
    disagree = elr_term(torch.tensor([[0.0, 3.0, 0.0]], dtype=F64), targets)
    assert float(agree) < float(disagree) < 0


# --- state and resume -----------------------------------------------------------------------------


def test_state_round_trip_gives_identical_next_outputs() -> None:
    g = torch.Generator().manual_seed(2)
    first = build(train_size=20, classes=4)
    for step in range(3):
        first.penalty(context(torch.randn(6, 4, generator=g), list(range(step, step + 6)), step))
    second = build(train_size=20, classes=4)
    second.load_state_dict(first.state_dict())
    for step in range(3, 6):
        logits = torch.randn(6, 4, generator=g)
        a = first.penalty(context(logits, [1, 4, 9, 12, 17, 19], step))
        b = second.penalty(context(logits, [1, 4, 9, 12, 17, 19], step))
        assert torch.equal(a, b)
    assert torch.equal(first.targets, second.targets)


def test_state_of_another_size_is_refused() -> None:
    with pytest.raises(ValueError, match=r"shape \(20, 4\), expected \(30, 4\)"):
        build(train_size=30).load_state_dict(build(train_size=20).state_dict())


def test_resumed_run_is_bit_identical() -> None:
    g = torch.Generator().manual_seed(5)
    # two epochs over 80 samples in shuffled batches, so samples are revisited after the resume
    batches = []
    for _ in range(2):
        order = torch.randperm(80, generator=g)
        for i in range(10):
            idx = order[8 * i : 8 * i + 8]
            batches.append(
                (torch.randn(8, 12, generator=g), torch.randint(0, 4, (8,), generator=g), idx)
            )
    whole, resumed = assert_resumes_bit_identically([{"name": "elr"}], setup(), batches, 7)
    whole_reg, resumed_reg = whole[1].items[0], resumed[1].items[0]
    assert isinstance(whole_reg, Elr) and isinstance(resumed_reg, Elr)
    assert torch.equal(whole_reg.targets, resumed_reg.targets)


# --- through the training loop --------------------------------------------------------------------


def test_trains_the_minimal_job() -> None:
    sink = CollectingSink()
    train_minimal_job([{"name": "elr"}], sink=sink)
    logged = [m.value for m in sink.metrics if m.name == "reg/elr"]
    assert len(logged) == 4 and all(math.isfinite(v) and v < 0 for v in logged)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"name": "elr", "beta": 1.0}, "regularizers[0].beta"),
        ({"name": "elr", "beta": -0.1}, "regularizers[0].beta"),
        ({"name": "elr", "strength": -1.0}, "regularizers[0].strength"),
        ({"name": "elr", "lambda": 3.0}, "regularizers[0].lambda"),
    ],
)
def test_bad_settings_name_the_path(raw: dict[str, Any], path: str) -> None:
    assert_bad_setting(raw, path)


# --- digits with label noise ----------------------------------------------------------------------


def test_digits_label_noise_is_symmetric_seeded_and_training_only() -> None:
    clean = DATASETS.build({"name": "digits"}, seed=3)
    noisy = DATASETS.build({"name": "digits", "label_noise": 0.4}, seed=3)
    again = DATASETS.build({"name": "digits", "label_noise": 0.4}, seed=3)
    other = DATASETS.build({"name": "digits", "label_noise": 0.4}, seed=4)
    assert torch.equal(noisy.train_x, clean.train_x)
    assert torch.equal(noisy.val_x, clean.val_x) and torch.equal(noisy.val_y, clean.val_y)
    assert torch.equal(noisy.train_y, again.train_y)
    wrong = noisy.train_y != clean.train_y
    assert int(wrong.sum()) == round(0.4 * len(clean.train_y))  # exactly 40 % wrong
    # the wrong labels spread over the other nine classes
    shift = (noisy.train_y[wrong] - clean.train_y[wrong]) % 10
    counts = torch.bincount(shift, minlength=10)
    assert counts[0] == 0 and bool((counts[1:] > 30).all())
    assert not torch.equal(
        other.train_y != DATASETS.build({"name": "digits"}, seed=4).train_y, wrong
    )


def test_digits_without_noise_is_unchanged() -> None:
    a = DATASETS.build({"name": "digits"}, seed=0)
    b = DATASETS.build({"name": "digits", "label_noise": 0.0}, seed=0)
    assert torch.equal(a.train_y, b.train_y)
    bad_noise = minimal_job([], data={"label_noise": 1.0})
    assert spec_error_paths(bad_noise) == ["data.label_noise"]


def run_example(name: str) -> list[float]:
    raw = yaml.safe_load((ROOT / "examples" / name).read_text())
    sink = CollectingSink()
    result = train(parse_spec(raw), sink, device=CPU)
    assert result.status == "completed"
    return [m.value for m in sink.metrics if m.name == "val_accuracy"]


def test_elr_beats_cross_entropy_on_clean_validation_labels() -> None:
    """The two examples as they are: the same job, seed and noisy labels, with and without ELR."""
    ce = run_example("ce-noisy-digits.yaml")
    elr = run_example("elr-noisy-digits.yaml")
    # cross-entropy memorises the noise: its validation accuracy falls from its early peak
    assert ce[-1] < max(ce) - 0.1
    # ELR keeps the early-learning accuracy and ends well above cross-entropy
    assert elr[-1] > ce[-1] + 0.1
    assert elr[-1] > 0.9
