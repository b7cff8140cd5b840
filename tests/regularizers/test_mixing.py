"""mixup, cutmix, rank_mixup: the formulas file's worked examples (§3.1–3.3), the convex-mix
identities, gradients of the ranking losses, seeded draws that resume bit-identically, training
through trainlib.train, and settings errors.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.regularizers.helpers import (
    assert_bad_setting,
    assert_resumes_bit_identically,
    minimal_job,
    sequential_batches,
    train_minimal_job,
)
from trainlib import parse_spec, train
from trainlib.data import DataInfo
from trainlib.errors import DataError
from trainlib.registries import REGULARIZERS
from trainlib.regularizers import PenaltyContext, Regularizer, RegularizerStack, SetupContext
from trainlib.regularizers.mixing import mndcg_loss, mrl_loss, rand_bbox

CPU = torch.device("cpu")
F64 = torch.float64


def setup(shape: tuple[int, ...] = (12,), seed: int = 0, classes: int = 4) -> SetupContext:
    return SetupContext(
        info=DataInfo(shape, classes),
        total_steps=100,
        steps_per_epoch=10,
        batch_size=8,
        train_size=80,
        seed=seed,
    )


def build(raw: dict[str, Any], **kw: Any) -> Regularizer:
    return RegularizerStack.build([REGULARIZERS.settings_for(raw)], setup(**kw)).items[0]


def batch(
    n: int = 16, features: int = 12, classes: int = 4, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g, dtype=F64)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y, torch.arange(n)


# --- mixup ----------------------------------------------------------------------------------------


def test_mixup_is_the_stated_convex_mix_of_two_samples() -> None:
    reg = build({"name": "mixup", "alpha": 1.0})
    x, y, idx = batch()
    mixed, targets = reg.transform_batch(x, y, idx, 0)
    lam, perm = reg.last
    assert 0.0 <= lam <= 1.0 and sorted(perm.tolist()) == list(range(16))
    onehot = F.one_hot(y, 4).to(F64)
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[perm], rtol=1e-12, atol=0)
    torch.testing.assert_close(targets, lam * onehot + (1 - lam) * onehot[perm], rtol=1e-12, atol=0)
    torch.testing.assert_close(targets.sum(1), torch.ones(16, dtype=F64))
    # the weight read from a target row is the weight of that row's input
    i = next(i for i in range(16) if y[i] != y[perm[i]])
    weight = targets[i, y[i]]
    torch.testing.assert_close(mixed[i], weight * x[i] + (1 - weight) * x[perm[i]])


def test_mixup_pair_loss_equals_soft_target_cross_entropy() -> None:
    reg = build({"name": "mixup"})
    x, y, idx = batch()
    _, targets = reg.transform_batch(x, y, idx, 0)
    lam, perm = reg.last
    logits = torch.randn(16, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    pairs = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm])
    torch.testing.assert_close(F.cross_entropy(logits, targets), pairs, rtol=1e-6, atol=0)


def test_mixup_alpha_zero_is_the_identity() -> None:
    reg = build({"name": "mixup", "alpha": 0.0})
    x, y, idx = batch()
    mixed, targets = reg.transform_batch(x, y, idx, 0)
    assert torch.equal(mixed, x)
    assert torch.equal(targets, F.one_hot(y, 4).to(F64))


def test_mixup_lambda_follows_beta() -> None:
    x, y, idx = batch(n=4)
    uniform = build({"name": "mixup", "alpha": 1.0})
    lams = []
    for step in range(2000):
        uniform.transform_batch(x, y, idx, step)
        lams.append(uniform.last[0])
    t = torch.tensor(lams)
    assert abs(float(t.mean()) - 0.5) < 0.03 and abs(float(t.var()) - 1 / 12) < 0.01
    peaked = build({"name": "mixup", "alpha": 0.2})
    lams = []
    for step in range(2000):
        peaked.transform_batch(x, y, idx, step)
        lams.append(peaked.last[0])
    t = torch.tensor(lams)
    assert float(((t < 0.1) | (t > 0.9)).float().mean()) > 0.5  # Beta(0.2, 0.2) is U-shaped


def test_mixup_passes_soft_targets_through() -> None:
    first, second = build({"name": "mixup"}), build({"name": "mixup"}, seed=7)
    x, y, idx = batch()
    x1, t1 = first.transform_batch(x, y, idx, 0)
    _, t2 = second.transform_batch(x1, t1, idx, 0)
    lam, perm = second.last
    torch.testing.assert_close(t2, lam * t1 + (1 - lam) * t1[perm])
    torch.testing.assert_close(t2.sum(1), torch.ones(16, dtype=F64))


def test_draws_depend_on_the_seed_only() -> None:
    x, y, idx = batch()
    a, b, c = build({"name": "mixup"}), build({"name": "mixup"}), build({"name": "mixup"}, seed=1)
    out_a, out_b, out_c = (r.transform_batch(x, y, idx, 0)[0] for r in (a, b, c))
    assert torch.equal(out_a, out_b) and not torch.equal(out_a, out_c)


# --- cutmix ---------------------------------------------------------------------------------------


def test_cutmix_box_worked_example_and_edges() -> None:
    assert rand_bbox(32, 32, 0.75, 16, 16) == (8, 8, 24, 24)
    x1, y1, x2, y2 = rand_bbox(32, 32, 0.75, 16, 16)
    assert 1 - (x2 - x1) * (y2 - y1) / (32 * 32) == 0.75
    # clipped at a border: the box shrinks, so λ_adj > λ
    x1, y1, x2, y2 = rand_bbox(32, 32, 0.75, 0, 31)
    assert (x1, y1, x2, y2) == (0, 23, 8, 32)
    assert 1 - (x2 - x1) * (y2 - y1) / 1024 > 0.75
    assert rand_bbox(32, 32, 1.0, 5, 5) == (5, 5, 5, 5)  # zero area: λ_adj = 1


def test_cutmix_pastes_the_box_and_mixes_labels_by_area() -> None:
    reg = build({"name": "cutmix", "prob": 1.0}, shape=(3, 8, 8))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 8, 8, generator=g, dtype=F64)
    y = torch.randint(0, 4, (16,), generator=g)
    for step in range(20):
        mixed, targets = reg.transform_batch(x, y, torch.arange(16), step)
        lam, perm, (x1, y1, x2, y2) = reg.last
        inside = torch.zeros(8, 8, dtype=torch.bool)
        inside[x1:x2, y1:y2] = True
        torch.testing.assert_close(mixed[..., inside], x[perm][..., inside], rtol=0, atol=0)
        torch.testing.assert_close(mixed[..., ~inside], x[..., ~inside], rtol=0, atol=0)
        assert lam == 1 - int(inside.sum()) / 64
        onehot = F.one_hot(y, 4).to(F64)
        torch.testing.assert_close(targets, lam * onehot + (1 - lam) * onehot[perm])


def test_cutmix_flat_inputs_use_the_data_shape() -> None:
    reg = build({"name": "cutmix", "prob": 1.0}, shape=(1, 8, 8))
    x, y, idx = batch(features=64)
    mixed, _ = reg.transform_batch(x, y, idx, 0)
    _, perm, (x1, y1, x2, y2) = reg.last
    assert mixed.shape == (16, 64)
    images, source = mixed.view(16, 1, 8, 8), x.view(16, 1, 8, 8)
    assert torch.equal(images[..., x1:x2, y1:y2], source[perm][..., x1:x2, y1:y2])


def test_cutmix_probability_zero_leaves_the_batch() -> None:
    reg = build({"name": "cutmix", "prob": 0.0}, shape=(1, 4, 4))
    x, y, idx = batch(features=16)
    mixed, targets = reg.transform_batch(x, y, idx, 0)
    assert torch.equal(mixed, x) and torch.equal(targets, F.one_hot(y, 4).to(F64))


def test_cutmix_rejects_inputs_without_two_spatial_dims() -> None:
    with pytest.raises(DataError, match=r"two spatial dimensions.*\(64,\).*flatten: false"):
        build({"name": "cutmix"}, shape=(64,))


# --- rank_mixup -----------------------------------------------------------------------------------


def test_mrl_worked_example_and_mask() -> None:
    raw = torch.tensor([[5.0, 1.0, 0.0]], dtype=F64)
    mixed = torch.tensor([[4.0, 3.0, 0.0]], dtype=F64)
    soft = torch.tensor([[0.7, 0.3, 0.0]], dtype=F64)
    torch.testing.assert_close(mrl_loss(raw, mixed, soft, 2.0), torch.tensor(1.0, dtype=F64))
    # a mixed target still holding a 1 (same-class partner) is masked out
    same = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64)
    assert float(mrl_loss(raw, mixed, same, 2.0)) == 0.0
    # 0 whenever every mixed max-logit is at most the raw one minus the margin
    low = torch.tensor([[2.9, 0.0, 0.0]], dtype=F64)
    assert float(mrl_loss(raw, low, soft, 2.0)) == 0.0


def test_mndcg_worked_example() -> None:
    # C = 2; confidences [0.9 (raw), 0.7, 0.5], relevances [1, 0.8, 0.6]
    def logits(p: float) -> list[float]:
        return [math.log(p), math.log(1 - p)]

    raw = torch.tensor([logits(0.9)], dtype=F64)
    mixed = torch.tensor([logits(0.7), logits(0.5)], dtype=F64)  # M = 2 copies, B = 1
    targets = torch.tensor([[0.8, 0.2], [0.4, 0.6]], dtype=F64)  # λ = max entry: 0.8, 0.6
    dcg = 0.9 + 0.7 / math.log2(3) + 0.5 / math.log2(4)
    idcg = 1 + 0.8 / math.log2(3) + 0.6 / math.log2(4)
    assert abs(dcg - 1.591651) < 1e-6 and abs(idcg - 1.804744) < 1e-6
    loss = mndcg_loss(raw, mixed, targets)
    torch.testing.assert_close(loss, torch.tensor(1 - dcg / idcg, dtype=F64), rtol=1e-6, atol=0)
    assert abs(float(loss) - 0.118074) < 1e-6
    # copies are ranked by λ: listing them in the other order changes nothing
    swapped = mndcg_loss(raw, mixed.flip(0), targets.flip(0))
    torch.testing.assert_close(swapped, loss, rtol=1e-12, atol=0)


def test_mndcg_is_in_zero_one() -> None:
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(32, 5, generator=g, dtype=F64) * 3
    mixed = torch.randn(96, 5, generator=g, dtype=F64) * 3
    targets = F.softmax(torch.randn(96, 5, generator=g, dtype=F64), 1)
    loss = mndcg_loss(raw, mixed, targets)
    assert 0.0 <= float(loss) < 1.0


def test_rank_losses_gradcheck() -> None:
    g = torch.Generator().manual_seed(3)
    raw = torch.randn(4, 3, generator=g, dtype=F64, requires_grad=True)
    mixed = torch.randn(8, 3, generator=g, dtype=F64, requires_grad=True)
    targets = F.softmax(torch.randn(8, 3, generator=g, dtype=F64), 1)
    assert torch.autograd.gradcheck(lambda a, b: mrl_loss(a, b, targets, 2.0), (raw, mixed))
    assert torch.autograd.gradcheck(lambda a, b: mndcg_loss(a, b, targets), (raw, mixed))


@pytest.mark.parametrize("loss", ["mrl", "mndcg"])
def test_rank_mixup_penalty_on_the_model(loss: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4)).double()
    reg = build({"name": "rank_mixup", "loss": loss, "strength": 0.5})
    x, y, idx = batch()
    logits = model(x)
    ctx = PenaltyContext(model, x, logits, y, idx, 0, F.cross_entropy(logits, y))
    value = reg.penalty(ctx)
    assert value is not None
    # the same draws, recomputed by hand
    step, drawn = reg._drawn
    assert step == 0 and len(drawn) == (1 if loss == "mrl" else 3)
    onehot = F.one_hot(y, 4).to(F64)
    xs, ts = [], []
    for lam, perm in drawn:
        xs.append(lam * x + (1 - lam) * x[perm])
        ts.append(lam * onehot + (1 - lam) * onehot[perm])
    mixed_logits = model(torch.cat(xs))
    if loss == "mrl":
        expected = mrl_loss(logits, mixed_logits, torch.cat(ts), 2.0)
    else:
        expected = mndcg_loss(logits, mixed_logits, torch.cat(ts))
    torch.testing.assert_close(value, 0.5 * expected, rtol=1e-12, atol=0)
    # a second pass on the same step (step strategies) reuses the draws
    torch.testing.assert_close(reg.penalty(ctx), value, rtol=0, atol=0)
    value.backward()
    assert all(p.grad is not None for p in model.parameters())


# --- state and resume -----------------------------------------------------------------------------

RESUME_CASES: list[tuple[dict[str, Any], tuple[int, ...]]] = [
    ({"name": "mixup"}, (12,)),
    ({"name": "cutmix", "prob": 0.7}, (3, 2, 2)),
    ({"name": "rank_mixup"}, (12,)),
    ({"name": "rank_mixup", "loss": "mndcg"}, (12,)),
]


@pytest.mark.parametrize(("raw", "shape"), RESUME_CASES, ids=lambda v: str(v))
def test_state_round_trip_gives_identical_next_outputs(
    raw: dict[str, Any], shape: tuple[int, ...]
) -> None:
    x, y, idx = batch()
    first = build(raw, shape=shape)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 4)).double()
    for step in range(3):
        first.transform_batch(x, y, idx, step)
    state = first.state_dict()
    second = build(raw, shape=shape, seed=99)
    second.load_state_dict(state)
    for step in range(3, 6):
        a = first.transform_batch(x, y, idx, step)
        b = second.transform_batch(x, y, idx, step)
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
        logits = model(x)
        ctx = PenaltyContext(model, x, logits, y, idx, step, logits.sum())
        pa, pb = first.penalty(ctx), second.penalty(ctx)
        assert (pa is None and pb is None) or torch.equal(pa, pb)


@pytest.mark.parametrize(("raw", "shape"), RESUME_CASES, ids=lambda v: str(v))
def test_resumed_run_is_bit_identical(raw: dict[str, Any], shape: tuple[int, ...]) -> None:
    assert_resumes_bit_identically([raw], setup(shape=shape), sequential_batches(), 4)


# --- through the training loop --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "data"),
    [
        ({"name": "mixup"}, {}),
        ({"name": "cutmix", "prob": 1.0}, {"flatten": False}),
        ({"name": "rank_mixup"}, {}),
        ({"name": "rank_mixup", "loss": "mndcg"}, {}),
    ],
    ids=["mixup", "cutmix", "rank_mixup-mrl", "rank_mixup-mndcg"],
)
def test_trains_the_minimal_job(raw: dict[str, Any], data: dict[str, Any]) -> None:
    spec = parse_spec(minimal_job([raw], data=data))
    soft = spec.regularizers[0].soft_targets
    assert soft == (raw["name"] != "rank_mixup")
    result = train_minimal_job([raw], data=data)
    assert result.final_metrics["val_accuracy"] > 0.3
    if raw["name"] == "rank_mixup":
        assert math.isfinite(result.final_metrics["reg/rank_mixup"])


def test_cutmix_on_flat_digits_fails_with_a_clear_error() -> None:
    with pytest.raises(DataError, match=r"data\.flatten: false"):
        train(parse_spec(minimal_job([{"name": "cutmix"}])), device=CPU)


# --- settings errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"name": "mixup", "alpha": -1.0}, "regularizers[0].alpha"),
        ({"name": "mixup", "lam": 0.5}, "regularizers[0].lam"),
        ({"name": "cutmix", "beta": 0.0}, "regularizers[0].beta"),
        ({"name": "cutmix", "prob": 1.5}, "regularizers[0].prob"),
        ({"name": "rank_mixup", "loss": "ndcg"}, "regularizers[0].loss"),
        ({"name": "rank_mixup", "margin": -1}, "regularizers[0].margin"),
        ({"name": "rank_mixup", "num_mixup": 0}, "regularizers[0].num_mixup"),
        ({"name": "rank_mixup", "strength": -0.1}, "regularizers[0].strength"),
    ],
)
def test_bad_settings_name_the_path(raw: dict[str, Any], path: str) -> None:
    assert_bad_setting(raw, path)
