"""Weight averaging: ema and its scaling rule (§5.1), swa with the batch-norm update (§5.2), lawa
(§5.3) of formulas-regularizers.md. Oracle checks in float64."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from tests.regularizers.helpers import (
    BATCH,
    CLASSES,
    FEATURES,
    SMALL_SETUP,
    N,
    assert_bad_setting,
    minimal_job,
    roundtrip,
)
from trainlib import CollectingSink, parse_spec, train
from trainlib.registries import REGULARIZERS
from trainlib.regularizers.averaging import Ema, Lawa, Swa
from trainlib.regularizers.base import Regularizer, SetupContext
from trainlib.regularizers.stack import RegularizerStack
from trainlib.step import train_step as plain_step

D = torch.float64
SGD = torch.optim.SGD


def setup_with(**changes: Any) -> SetupContext:
    fields = {k: getattr(SMALL_SETUP, k) for k in SMALL_SETUP.__dataclass_fields__}
    fields.update(changes)
    return SetupContext(**fields)


def build(name: str, setup: SetupContext = SMALL_SETUP, **settings: Any) -> Regularizer:
    reg: Regularizer = REGULARIZERS.build({"name": name, **settings}, setup)
    reg.name = name
    return reg


def mlp(seed: int = 0, norm: bool = False) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(FEATURES, 8)]
    if norm:
        layers.append(nn.BatchNorm1d(8))
    layers += [nn.ReLU(), nn.Linear(8, CLASSES)]
    return nn.Sequential(*layers).to(D)


def randomise(model: nn.Module, seed: int) -> list[torch.Tensor]:
    """Give every parameter fresh values (a "snapshot" of training); returns copies."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return [p.detach().clone() for p in model.parameters()]


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x, y = (
        torch.randn(N, FEATURES, generator=g, dtype=D),
        torch.randint(0, CLASSES, (N,), generator=g),
    )
    epoch, pos = divmod(step, SMALL_SETUP.steps_per_epoch)
    order = torch.randperm(N, generator=torch.Generator().manual_seed(100 + epoch))
    idx = order[pos * BATCH : (pos + 1) * BATCH]
    return x[idx], y[idx], idx


# ---------------------------------------------------------------------------------------------
# ema and the scaling rule


def ema_for(batch_size: int, decay: float, reference: int) -> tuple[Ema, nn.Module]:
    model = nn.Linear(2, 1).to(D)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    reg = build(
        "ema", setup_with(batch_size=batch_size), decay=decay, reference_batch_size=reference
    )
    assert isinstance(reg, Ema)
    reg.configure_model(model)
    return reg, model


def test_ema_scaling_rule_worked_examples() -> None:
    reg, _ = ema_for(32, 0.999, 8)  # κ = 4
    assert reg.decay == pytest.approx(0.996006, rel=1e-6)
    assert reg.decay == pytest.approx(0.999**4, rel=1e-15)
    # ρ = 0.99: 8 updates at B toward 0 from 1.0, or 2 at 4B with ρ^4: both 0.922745
    small, small_model = ema_for(8, 0.99, 8)
    large, large_model = ema_for(32, 0.99, 8)
    for model in (small_model, large_model):
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
    for step in range(8):
        small.after_step(small_model, SGD(small_model.parameters(), lr=0), step)
    for step in range(2):
        large.after_step(large_model, SGD(large_model.parameters(), lr=0), step)
    assert small.model is not None and large.model is not None
    for a, b in zip(small.model.parameters(), large.model.parameters(), strict=True):
        assert float(a[..., 0] if a.ndim else a) == pytest.approx(0.922745, rel=1e-6)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)


def test_ema_scaling_rule_on_a_stream() -> None:
    """A stream whose value changes every κ small batches (one large batch): the same average."""
    kappa, blocks = 4, 6
    small, small_model = ema_for(8, 0.99, 8)
    large, large_model = ema_for(8 * kappa, 0.99, 8)
    g = torch.Generator().manual_seed(0)
    targets = torch.randn(blocks, 3, generator=g, dtype=D)
    step = 0
    for block in range(blocks):
        for model in (small_model, large_model):
            with torch.no_grad():
                model.weight.copy_(targets[block, :2])
                model.bias.copy_(targets[block, 2:])
        large.after_step(large_model, SGD(large_model.parameters(), lr=0), block)
        for _ in range(kappa):
            small.after_step(small_model, SGD(small_model.parameters(), lr=0), step)
            step += 1
    assert small.model is not None and large.model is not None
    for a, b in zip(small.model.parameters(), large.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# swa


def swa(setup: SetupContext = SMALL_SETUP, **settings: Any) -> Swa:
    reg = build("swa", setup, **settings)
    assert isinstance(reg, Swa)
    return reg


def test_swa_is_the_arithmetic_mean_of_its_snapshots() -> None:
    model = mlp()
    forward, backward = swa(start=1, every=1), swa(start=1, every=1)
    forward.configure_model(model)
    backward.configure_model(model)
    snapshots = [randomise(model, seed) for seed in range(5)]
    for step, snapshot in enumerate(snapshots):
        with torch.no_grad():
            for p, s in zip(model.parameters(), snapshot, strict=True):
                p.copy_(s)
        forward.after_step(model, SGD(model.parameters(), lr=0), step)
    for step, snapshot in enumerate(reversed(snapshots)):
        with torch.no_grad():
            for p, s in zip(model.parameters(), snapshot, strict=True):
                p.copy_(s)
        backward.after_step(model, SGD(model.parameters(), lr=0), step)
    assert forward.n_averaged == 5
    averaged, reverse = forward.evaluation_model(), backward.evaluation_model()
    assert averaged is not None and reverse is not None
    for i, (p, q) in enumerate(zip(averaged.parameters(), reverse.parameters(), strict=True)):
        mean = torch.stack([s[i] for s in snapshots]).mean(0)
        torch.testing.assert_close(p, mean, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(q, mean, rtol=1e-12, atol=1e-15)  # independent of order


@pytest.mark.parametrize(
    ("settings", "collected_after"),
    [
        ({"start": 0.5}, [6, 9, 12]),  # step 6 of 12, then every epoch (3 steps)
        ({"start": 4, "every": 2}, [4, 6, 8, 10, 12]),
        ({"start": 0.0, "every": 5}, [5, 10]),
    ],
)
def test_swa_schedule(settings: dict[str, Any], collected_after: list[int]) -> None:
    reg = swa(**settings)
    model = mlp()
    reg.configure_model(model)
    counts = []
    assert reg.evaluation_model() is None  # nothing to evaluate before the first snapshot
    for step in range(SMALL_SETUP.total_steps):
        reg.after_step(model, SGD(model.parameters(), lr=0), step)
        counts.append(reg.n_averaged)
    expected = [sum(1 for c in collected_after if c <= done) for done in range(1, 13)]
    assert counts == expected


def test_swa_refreshes_batchnorm_with_every_sample_counted_once() -> None:
    model = mlp(norm=True)
    reg = swa(start=1, every=1)
    reg.configure_model(model)
    randomise(model, 3)
    reg.after_step(model, SGD(model.parameters(), lr=0), 0)
    assert reg.batchnorm_stale
    averaged = reg.evaluation_model()
    assert averaged is not None
    x = torch.randn(42, FEATURES, generator=torch.Generator().manual_seed(5), dtype=D)
    batches = [(x[:16], None), (x[16:32], None), (x[32:], None)]  # a ragged last batch
    reg.refresh_batchnorm(batches)
    assert not reg.batchnorm_stale and not averaged.training
    bn = averaged[1]
    assert isinstance(bn, nn.BatchNorm1d) and bn.momentum == 0.1  # momentum restored
    with torch.no_grad():
        features = averaged[0](x)
    torch.testing.assert_close(bn.running_mean, features.mean(0), rtol=1e-12, atol=1e-14)
    sizes = [16, 16, 10]
    chunks = features.split(sizes)
    var = sum(n / 42 * c.var(0, unbiased=True) for n, c in zip(sizes, chunks, strict=True))
    torch.testing.assert_close(bn.running_var, var, rtol=1e-12, atol=1e-14)
    # nothing collected since: a second call leaves the statistics alone
    reg.refresh_batchnorm([x[:5]])
    torch.testing.assert_close(bn.running_mean, features.mean(0), rtol=1e-12, atol=1e-14)


def test_swa_without_batchnorm_needs_no_refresh() -> None:
    model = mlp()
    reg = swa(start=1, every=1)
    reg.configure_model(model)
    reg.after_step(model, SGD(model.parameters(), lr=0), 0)
    assert not reg.batchnorm_stale
    averaged = reg.evaluation_model()
    assert averaged is not None
    before = {k: v.clone() for k, v in averaged.state_dict().items()}
    reg.refresh_batchnorm([torch.zeros(4, FEATURES, dtype=D)])
    assert all(torch.equal(v, before[k]) for k, v in averaged.state_dict().items())


# ---------------------------------------------------------------------------------------------
# lawa


def test_lawa_is_the_mean_of_the_k_latest_snapshots() -> None:
    model = mlp(norm=True)
    reg = build("lawa", k=3, every=2)
    assert isinstance(reg, Lawa)
    reg.configure_model(model)
    states = []
    for step in range(12):
        randomise(model, step)
        with torch.no_grad():  # BN statistics change too: floating buffers are averaged
            model[1].running_mean.fill_(float(step))
            model[1].num_batches_tracked.fill_(step)
        reg.after_step(model, SGD(model.parameters(), lr=0), step)
        if (step + 1) % 2 == 0:
            states.append({k: v.clone() for k, v in model.state_dict().items()})
        averaged = reg.evaluation_model()
        if not states:
            assert averaged is None
            continue
        assert averaged is not None
        window = states[-3:]
        for key, value in averaged.state_dict().items():
            if value.is_floating_point():
                mean = torch.stack([s[key] for s in window]).mean(0)
                torch.testing.assert_close(value, mean, rtol=1e-12, atol=1e-14)
            else:
                assert torch.equal(value, window[-1][key])  # the newest snapshot's counter
    assert reg.collected == 6 and len(reg.slots) == 3


def test_lawa_state_round_trip() -> None:
    model = mlp()
    reg = build("lawa", k=3, every=1)
    reg.configure_model(model)
    for step in range(4):  # the ring has wrapped: the oldest slot is not slot 0
        randomise(model, step)
        reg.after_step(model, SGD(model.parameters(), lr=0), step)
    twin = build("lawa", k=3, every=1)
    twin.configure_model(mlp(5))
    twin.load_state_dict(roundtrip(reg.state_dict()))
    randomise(model, 99)
    for r in (reg, twin):
        r.after_step(model, SGD(model.parameters(), lr=0), 4)
    a, b = reg.evaluation_model(), twin.evaluation_model()
    assert a is not None and b is not None
    for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q)


# ---------------------------------------------------------------------------------------------
# all three: resume, the loop, the spec


def run(
    stack: RegularizerStack,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    start: int,
    stop: int,
) -> None:
    loss_fn = nn.CrossEntropyLoss()
    for step in range(start, stop):
        x, y, idx = batch(step)
        compute = stack.loss_closure(loss_fn, model, x, idx, step)
        plain_step(model, optimizer, x, y, compute)
        stack.after_step(model, optimizer, step)


@pytest.mark.parametrize(
    "reg",
    [
        {"name": "ema", "decay": 0.9, "warmup": True},
        {"name": "swa", "start": 0.25, "every": 2},
        {"name": "lawa", "k": 2, "every": 2},
    ],
    ids=lambda r: r["name"],
)
@pytest.mark.parametrize("norm", [False, True], ids=["plain", "batchnorm"])
def test_resumed_run_equals_uninterrupted(reg: dict[str, Any], norm: bool) -> None:
    def fresh(seed: int) -> tuple[nn.Module, torch.optim.Optimizer, RegularizerStack]:
        model = mlp(seed, norm)
        stack = RegularizerStack.build([REGULARIZERS.settings_for(reg)], SMALL_SETUP)
        stack.configure_model(model)
        return model, SGD(model.parameters(), lr=0.1, momentum=0.9), stack

    model, optimizer, stack = fresh(0)
    run(stack, model, optimizer, 0, 12)
    model_a, optimizer_a, stack_a = fresh(0)
    run(stack_a, model_a, optimizer_a, 0, 5)
    saved = roundtrip(
        {"m": model_a.state_dict(), "o": optimizer_a.state_dict(), "r": stack_a.state_dict()}
    )
    model_b, optimizer_b, stack_b = fresh(7)
    model_b.load_state_dict(saved["m"])
    optimizer_b.load_state_dict(saved["o"])
    stack_b.load_state_dict(saved["r"])
    run(stack_b, model_b, optimizer_b, 5, 12)
    whole, resumed = stack.evaluation_models(), stack_b.evaluation_models()
    assert list(whole) == list(resumed) == [reg["name"]]
    for a, b in zip(
        whole[reg["name"]].state_dict().values(),
        resumed[reg["name"]].state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b)
    for a, b in zip(model.state_dict().values(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "reg",
    [{"name": "ema"}, {"name": "swa", "start": 0.25, "every": 5}, {"name": "lawa", "every": 5}],
    ids=lambda r: r["name"],
)
def test_trains_the_minimal_job_and_evaluates_the_average(reg: dict[str, Any]) -> None:
    sink = CollectingSink()
    result = train(parse_spec(minimal_job([reg], eval_every=20)), sink)
    assert result.status == "completed"
    assert math.isfinite(result.final_metrics["loss"])
    name = reg["name"]
    assert math.isfinite(result.final_metrics[f"{name}/val_loss"])
    assert 0 <= result.final_metrics[f"{name}/val_accuracy"] <= 1


@pytest.mark.parametrize(
    ("reg", "path"),
    [
        ({"name": "swa", "start": 1.5}, "regularizers[0].start"),
        ({"name": "swa", "start": -0.1}, "regularizers[0].start"),
        ({"name": "swa", "every": 0}, "regularizers[0].every"),
        ({"name": "swa", "c_epochs": 1}, "regularizers[0].c_epochs"),
        ({"name": "lawa", "k": 0}, "regularizers[0].k"),
        ({"name": "lawa", "every": 0}, "regularizers[0].every"),
        ({"name": "ema", "decay": 1.0}, "regularizers[0].decay"),
    ],
)
def test_bad_settings_name_the_field(reg: dict[str, Any], path: str) -> None:
    assert_bad_setting(reg, path)


def test_swa_start_as_a_step_or_a_fraction() -> None:
    assert swa(start=0.5).start == 6
    assert swa(start=7).start == 7
    assert swa(start=0.55, setup=setup_with(total_steps=1000)).start == 550
    assert swa().every == SMALL_SETUP.steps_per_epoch
