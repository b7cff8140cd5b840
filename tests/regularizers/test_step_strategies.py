"""Step strategies and after-step rules: awp, rwp (§4.1, §4.2), shrink_perturb, continual_backprop
(§4.3, §4.4) of formulas-regularizers.md.

AWP and RWP are checked against a transcription of the authors' proxy-model code (a proxy copy,
SGD at lr 0.01 on the negated loss, weight differences rescaled), in float64.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from typing import Any

import pytest
import torch
import torch.nn.functional as F
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
    train_minimal_job,
)
from trainlib import parse_spec
from trainlib.registries import REGULARIZERS
from trainlib.regularizers.base import Regularizer, SetupContext
from trainlib.regularizers.plasticity import ContinualBackprop, ShrinkPerturb, fresh_parameters
from trainlib.regularizers.stack import RegularizerStack
from trainlib.regularizers.weight_perturbation import (
    Awp,
    awp_direction,
    perturbed_weights,
)
from trainlib.spec import SpecError
from trainlib.step import train_step as plain_step

D = torch.float64


def build(name: str, setup: SetupContext = SMALL_SETUP, **settings: Any) -> Regularizer:
    reg: Regularizer = REGULARIZERS.build({"name": name, **settings}, setup)
    reg.name = name
    return reg


def stack_of(*specs: dict[str, Any], setup: SetupContext = SMALL_SETUP) -> RegularizerStack:
    return RegularizerStack.build([REGULARIZERS.settings_for(s) for s in specs], setup)


def mlp(seed: int = 0, norm: bool = False, hidden: int = 8) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(FEATURES, hidden)]
    if norm:
        layers.append(nn.BatchNorm1d(hidden))
    layers += [nn.ReLU(), nn.Linear(hidden, CLASSES)]
    return nn.Sequential(*layers).to(D)


def dataset() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(N, FEATURES, generator=g, dtype=D), torch.randint(
        0, CLASSES, (N,), generator=g
    )


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = dataset()
    epoch, pos = divmod(step, SMALL_SETUP.steps_per_epoch)
    order = torch.randperm(N, generator=torch.Generator().manual_seed(100 + epoch))
    idx = order[pos * BATCH : (pos + 1) * BATCH]
    return x[idx], y[idx], idx


def run(
    stack: RegularizerStack,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    start: int,
    stop: int,
) -> list[float]:
    """The loop's order: transform_batch, loss_closure, strategy or plain step, after_step."""
    losses = []
    loss_fn = nn.CrossEntropyLoss()
    for step in range(start, stop):
        x, y, idx = batch(step)
        x, y = stack.transform_batch(x, y, idx, step)
        compute = stack.loss_closure(loss_fn, model, x, idx, step)
        step_fn = stack.strategy.train_step if stack.strategy else plain_step
        loss, _ = step_fn(model, optimizer, x, y, compute)
        stack.after_step(model, optimizer, step)
        losses.append(float(loss.detach()))
    return losses


def assert_resumes(
    specs: list[dict[str, Any]], *, norm: bool = False, steps: int = 12, cut: int = 5
) -> None:
    """k steps, save model + optimizer + regularizer state, rebuild, continue == uninterrupted."""

    def fresh(seed: int) -> tuple[nn.Module, torch.optim.Optimizer, RegularizerStack]:
        model = mlp(seed, norm)
        stack = stack_of(*specs)
        stack.configure_model(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        return model, optimizer, stack

    model, optimizer, stack = fresh(0)
    whole = run(stack, model, optimizer, 0, steps)

    model_a, optimizer_a, stack_a = fresh(0)
    first = run(stack_a, model_a, optimizer_a, 0, cut)
    saved = roundtrip(
        {
            "model": model_a.state_dict(),
            "opt": optimizer_a.state_dict(),
            "reg": stack_a.state_dict(),
        }
    )
    model_b, optimizer_b, stack_b = fresh(7)  # different initial weights: all must come from state
    model_b.load_state_dict(saved["model"])
    optimizer_b.load_state_dict(saved["opt"])
    stack_b.load_state_dict(saved["reg"])
    rest = run(stack_b, model_b, optimizer_b, cut, steps)

    assert first + rest == whole
    for a, b in zip(model.state_dict().values(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def spec(regs: list[dict[str, Any]], **optimizer: Any) -> dict[str, Any]:
    return minimal_job(regs, optimizer=optimizer or None)


# ---------------------------------------------------------------------------------------------
# the authors' AWP / RWP, transcribed with proxy models (utils_awp.py, utils_rwp.py)

EPS = 1e-20


def _diff(old: nn.Module, new: nn.Module, normalise: bool) -> OrderedDict[str, torch.Tensor]:
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (k, w_old), (_, w_new) in zip(
        old.state_dict().items(), new.state_dict().items(), strict=True
    ):
        if w_old.dim() <= 1 or "weight" not in k:
            continue
        d = w_new - w_old
        out[k] = w_old.norm() / (d.norm() + EPS) * d if normalise else d
    return out


def _add(model: nn.Module, diff: dict[str, torch.Tensor], coeff: float) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in diff:
                p.add_(coeff * diff[name])


def reference_awp(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, gamma: float
) -> dict[str, torch.Tensor]:
    proxy = copy.deepcopy(model)
    opt = torch.optim.SGD(proxy.parameters(), lr=0.01)
    loss = -F.cross_entropy(proxy(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    diff = _diff(model, proxy, normalise=True)
    return {k: gamma * v for k, v in diff.items()}


def reference_rwp(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, gamma: float, c_min: float, steps: int
) -> dict[str, torch.Tensor]:
    diff: dict[str, torch.Tensor] = {}
    scaled: dict[str, torch.Tensor] = {}
    for _ in range(steps):
        p1, p2 = copy.deepcopy(model), copy.deepcopy(model)
        _add(p1, scaled, gamma)
        _add(p2, scaled, gamma)
        opt = torch.optim.SGD(p2.parameters(), lr=0.01)
        ce = F.cross_entropy(p2(x), y, reduction="none")
        loss = -(ce * (ce < c_min).to(ce.dtype)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step = _diff(p1, p2, normalise=False)
        diff = step if not diff else {k: diff[k] + step[k] for k in diff}
        names = list(diff)
        w_all = torch.cat([p.detach().view(-1) for n, p in model.named_parameters() if n in names])
        d_all = torch.cat([diff[n].view(-1) for n in names])
        scale = w_all.norm() / (d_all.norm() + EPS)
        scaled = {k: scale * v for k, v in diff.items()}
    return {k: gamma * v for k, v in scaled.items()}


def reference_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, shift: dict[str, torch.Tensor], lr: float
) -> None:
    """Perturb, SGD step with the gradient there, restore (train_cifar10.py)."""
    _add(model, shift, 1.0)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    _add(model, shift, -1.0)


@pytest.mark.parametrize("name", ["awp", "rwp"])
def test_matches_the_authors_proxy_code(name: str) -> None:
    x, y, _ = batch(0)
    ours, theirs = mlp(), mlp()
    if name == "awp":
        reg = build("awp", gamma=0.05)
        shift = reference_awp(theirs, x, y, 0.05)
    else:
        reg = build("rwp", gamma=0.05, c_min=1.2, inner_steps=4)
        shift = reference_rwp(theirs, x, y, 0.05, 1.2, 4)
    reference_step(theirs, x, y, shift, lr=0.5)
    opt = torch.optim.SGD(ours.parameters(), lr=0.5)
    loss, logits = reg.train_step(ours, opt, x, y, nn.CrossEntropyLoss())
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # the step reports the clean pass: loss and logits at the unperturbed weights
    clean = mlp()(x)
    torch.testing.assert_close(logits, clean, rtol=0, atol=0)
    torch.testing.assert_close(loss, F.cross_entropy(clean, y), rtol=0, atol=0)


def test_awp_worked_example_perturbation_has_norm_gamma_times_weight() -> None:
    w = torch.tensor([[1.2, 1.6]], dtype=D)  # ‖w‖ = 2
    g = torch.tensor([[3.0, 4.0]], dtype=D)
    (shift,) = awp_direction([w], [g], 0.01)
    torch.testing.assert_close(shift, torch.tensor([[0.012, 0.016]], dtype=D), rtol=1e-6, atol=0)
    assert float(shift.norm()) == pytest.approx(0.02, rel=1e-12)
    # ‖v_l‖ = ‖w_l‖ for every layer (γ = 1), whatever the gradient's scale
    model = mlp()
    weights = [w.detach() for w in perturbed_weights(model)]
    grads = [torch.randn_like(w) * s for w, s in zip(weights, [1e-3, 1e3], strict=True)]
    for w, v in zip(weights, awp_direction(weights, grads, 1.0), strict=True):
        assert float(v.norm()) == pytest.approx(float(w.norm()), rel=1e-12)


def test_only_weight_matrices_are_perturbed() -> None:
    model = mlp(norm=True)
    names = {
        n for n, p in model.named_parameters() if any(p is w for w in perturbed_weights(model))
    }
    assert names == {"0.weight", "3.weight"}  # biases and BN gains stay


def test_gamma_zero_is_plain_training() -> None:
    x, y, _ = batch(0)
    plain, perturbed = mlp(), mlp()
    plain_step(plain, torch.optim.SGD(plain.parameters(), lr=0.3), x, y, nn.CrossEntropyLoss())
    # the two-pass machinery itself, at γ = 0: the second pass sees w exactly
    reg = Awp(0.0, 0)
    opt = torch.optim.SGD(perturbed.parameters(), lr=0.3)
    reg._perturbed_step(perturbed, opt, x, y, nn.CrossEntropyLoss(), perturbed_weights(perturbed))
    for a, b in zip(plain.parameters(), perturbed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_rwp_without_low_loss_examples_is_plain_training() -> None:
    x, y, _ = batch(0)
    plain, robust = mlp(), mlp()
    plain_step(plain, torch.optim.SGD(plain.parameters(), lr=0.3), x, y, nn.CrossEntropyLoss())
    reg = build("rwp", c_min=1e-9)  # no CE_i below it: the perturbation stays 0
    reg.train_step(
        robust, torch.optim.SGD(robust.parameters(), lr=0.3), x, y, nn.CrossEntropyLoss()
    )
    for a, b in zip(plain.parameters(), robust.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["awp", "rwp"])
def test_zero_lr_restores_the_weights(name: str) -> None:
    x, y, _ = batch(0)
    model = mlp()
    before = copy.deepcopy(model.state_dict())
    build(name, gamma=0.1).train_step(
        model, torch.optim.SGD(model.parameters(), lr=0.0), x, y, nn.CrossEntropyLoss()
    )
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", ["awp", "rwp"])
def test_batchnorm_statistics_come_from_the_clean_pass(name: str) -> None:
    x, y, _ = batch(0)
    model, reference = mlp(norm=True), mlp(norm=True)
    build(name, gamma=0.1).train_step(
        model, torch.optim.SGD(model.parameters(), lr=0.1), x, y, nn.CrossEntropyLoss()
    )
    reference(x)  # one forward at the unperturbed weights, in train mode
    for a, b in zip(model.buffers(), reference.buffers(), strict=True):
        assert torch.equal(a, b)


def test_warmup_takes_plain_steps_then_perturbs() -> None:
    reg = build("awp", gamma=0.1, warmup_epochs=1)
    x, y, _ = batch(0)
    plain, model = mlp(), mlp()
    for _ in range(SMALL_SETUP.steps_per_epoch):
        plain_step(plain, torch.optim.SGD(plain.parameters(), lr=0.1), x, y, nn.CrossEntropyLoss())
        reg.train_step(
            model, torch.optim.SGD(model.parameters(), lr=0.1), x, y, nn.CrossEntropyLoss()
        )
    assert all(
        torch.equal(a, b) for a, b in zip(plain.parameters(), model.parameters(), strict=True)
    )
    plain_step(plain, torch.optim.SGD(plain.parameters(), lr=0.1), x, y, nn.CrossEntropyLoss())
    reg.train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), x, y, nn.CrossEntropyLoss())
    assert not torch.equal(plain[0].weight, model[0].weight)
    fresh = build("awp", gamma=0.1, warmup_epochs=1)
    fresh.load_state_dict(roundtrip(reg.state_dict()))
    assert fresh.state_dict() == reg.state_dict() == {"steps": SMALL_SETUP.steps_per_epoch + 1}


@pytest.mark.parametrize(
    "specs",
    [
        [{"name": "awp", "gamma": 0.05, "warmup_epochs": 1}],
        [{"name": "rwp", "gamma": 0.05, "inner_steps": 3, "warmup_epochs": 1}],
        [{"name": "shrink_perturb", "every": 2}],
        [
            {
                "name": "shrink_perturb",
                "noise": "gaussian",
                "shrink": 1.0,
                "perturb": 1e-3,
                "every": 1,
            }
        ],
        [
            {
                "name": "continual_backprop",
                "replacement_rate": 0.1,
                "maturity_threshold": 2,
                "accumulate": False,
            }
        ],
    ],
    ids=["awp", "rwp", "shrink_perturb", "shrink_perturb_gaussian", "continual_backprop"],
)
@pytest.mark.parametrize("norm", [False, True], ids=["plain", "batchnorm"])
def test_resumed_run_equals_uninterrupted(specs: list[dict[str, Any]], norm: bool) -> None:
    assert_resumes(specs, norm=norm)


@pytest.mark.parametrize(
    "reg",
    [
        {"name": "awp"},
        {"name": "rwp", "inner_steps": 3},
        {"name": "shrink_perturb"},
        {"name": "continual_backprop", "maturity_threshold": 5, "replacement_rate": 0.01},
    ],
    ids=lambda r: r["name"],
)
def test_trains_the_minimal_job(reg: dict[str, Any]) -> None:
    result = train_minimal_job([reg])
    assert math.isfinite(result.final_metrics["val_loss"])


@pytest.mark.parametrize(
    ("regs", "optimizer"),
    [
        ([{"name": "awp"}, {"name": "rwp"}], {}),
        ([{"name": "awp"}], {"name": "sam", "base": {"name": "sgd", "lr": 0.1}}),
        ([{"name": "rwp"}], {"name": "asam", "base": {"name": "sgd", "lr": 0.1}}),
    ],
    ids=["awp+rwp", "awp+sam", "rwp+asam"],
)
def test_two_step_strategies_are_a_spec_error(
    regs: list[dict[str, Any]], optimizer: dict[str, Any]
) -> None:
    with pytest.raises(SpecError, match="step strategies"):
        parse_spec(spec(regs, **optimizer))


@pytest.mark.parametrize(
    ("reg", "path"),
    [
        ({"name": "awp", "gamma": -0.1}, "regularizers[0].gamma"),
        ({"name": "awp", "warmup_epochs": -1}, "regularizers[0].warmup_epochs"),
        ({"name": "rwp", "inner_steps": 0}, "regularizers[0].inner_steps"),
        ({"name": "rwp", "c_min": 0}, "regularizers[0].c_min"),
        ({"name": "rwp", "gama": 0.1}, "regularizers[0].gama"),
        ({"name": "shrink_perturb", "shrink": 1.5}, "regularizers[0].shrink"),
        ({"name": "shrink_perturb", "noise": "uniform"}, "regularizers[0].noise"),
        ({"name": "shrink_perturb", "every": 0}, "regularizers[0].every"),
        ({"name": "continual_backprop", "decay_rate": 1.0}, "regularizers[0].decay_rate"),
        ({"name": "continual_backprop", "replacement_rate": 2}, "regularizers[0].replacement_rate"),
        ({"name": "continual_backprop", "utility": "weight"}, "regularizers[0].utility"),
    ],
)
def test_bad_settings_name_the_field(reg: dict[str, Any], path: str) -> None:
    assert_bad_setting(reg, path)


def test_step_strategy_flags() -> None:
    for name, flag in [
        ("awp", True),
        ("rwp", True),
        ("shrink_perturb", False),
        ("continual_backprop", False),
    ]:
        assert REGULARIZERS.get(name).settings.step_strategy is flag
    assert stack_of({"name": "awp"}).strategy is not None


# ---------------------------------------------------------------------------------------------
# shrink and perturb


class Scalar(nn.Module):
    """One parameter whose fresh initialisation is 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(1.0, dtype=D))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.theta.fill_(0.5)


def test_shrink_perturb_worked_example() -> None:
    model = Scalar()
    reg = build("shrink_perturb", shrink=0.4, perturb=0.1)
    assert isinstance(reg, ShrinkPerturb)
    reg.apply(model)
    assert float(model.theta.detach()) == pytest.approx(0.45, rel=1e-12)  # 0.4·1.0 + 0.1·0.5


def test_shrink_perturb_identities() -> None:
    model = mlp(norm=True)
    before = copy.deepcopy(model.state_dict())
    keep = build("shrink_perturb", shrink=1.0, perturb=0.0)
    assert isinstance(keep, ShrinkPerturb)
    keep.apply(model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # (0, 1) is a re-initialisation, drawn from the regularizer's own generator
    reinit = build("shrink_perturb", shrink=0.0, perturb=1.0)
    assert isinstance(reinit, ShrinkPerturb)
    seed = int(
        torch.randint(
            0, 2**63 - 1, (), generator=torch.Generator().set_state(reinit.generator.get_state())
        )
    )
    expected = fresh_parameters(model, seed)
    global_state = torch.random.get_rng_state()
    reinit.apply(model)
    assert torch.equal(torch.random.get_rng_state(), global_state)  # the job's stream untouched
    for p, f in zip(model.parameters(), expected, strict=True):
        assert torch.equal(p, f)
    assert torch.equal(model[1].weight, torch.ones(8, dtype=D))  # BN gain: 0·γ + 1·1


def test_shrink_perturb_gaussian_noise_has_scale_sigma() -> None:
    model = nn.Sequential(nn.Linear(200, 200)).to(D)
    before = model[0].weight.detach().clone()
    reg = build("shrink_perturb", noise="gaussian", shrink=1.0, perturb=1e-2)
    assert isinstance(reg, ShrinkPerturb)
    reg.apply(model)
    noise = (model[0].weight.detach() - before) / 1e-2
    assert abs(float(noise.mean())) < 0.02
    assert float(noise.std()) == pytest.approx(1.0, abs=0.02)


def test_shrink_perturb_runs_every_n_steps_but_never_after_the_last() -> None:
    setup = SetupContext(
        SMALL_SETUP.info, total_steps=9, steps_per_epoch=3, batch_size=16, train_size=48, seed=0
    )
    reg = build("shrink_perturb", setup, shrink=0.5, perturb=0.0)
    model = Scalar()
    values = []
    for step in range(9):
        reg.after_step(model, torch.optim.SGD(model.parameters(), lr=0.0), step)
        values.append(float(model.theta.detach()))
    # every epoch (3 steps) by default: after steps 3 and 6, not after step 9 (the end)
    assert values == [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25]


# ---------------------------------------------------------------------------------------------
# continual backprop


def cbp(model: nn.Module, **settings: Any) -> ContinualBackprop:
    reg = build("continual_backprop", **settings)
    assert isinstance(reg, ContinualBackprop)
    reg.configure_model(model)
    return reg


def hidden(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    return model[:-1](x)


def test_cbp_utility_hand_computed() -> None:
    model = mlp()
    reg = cbp(model, replacement_rate=0.5, maturity_threshold=10, decay_rate=0.9)
    x, _, _ = batch(0)
    model(x)
    h = hidden(model, x).detach()
    reg.after_step(model, torch.optim.SGD(model.parameters(), lr=0.0), 0)
    (layer,) = reg.layers
    contribution = model[2].weight.abs().mean(0) * h.abs().mean(0)
    torch.testing.assert_close(layer.utility, 0.1 * contribution, rtol=1e-12, atol=0)
    torch.testing.assert_close(layer.mean_act, 0.1 * h.mean(0), rtol=1e-12, atol=0)
    assert torch.equal(layer.ages, torch.ones(8, dtype=torch.long))
    # the adaptable form divides by the mean incoming weight and centres on the running mean
    model2 = mlp()
    reg2 = cbp(
        model2,
        replacement_rate=0.5,
        maturity_threshold=10,
        decay_rate=0.9,
        utility="adaptable_contribution",
    )
    model2(x)
    reg2.after_step(model2, torch.optim.SGD(model2.parameters(), lr=0.0), 0)
    centred = (h - h.mean(0)).abs().mean(0)  # ĥ = 0.1·mean / (1 − 0.9) = mean at age 1
    expected = 0.1 * model2[2].weight.abs().mean(0) * centred / model2[0].weight.abs().mean(1)
    torch.testing.assert_close(reg2.layers[0].utility, expected, rtol=1e-10, atol=0)


def test_cbp_replacement_keeps_the_expected_output() -> None:
    model = mlp()
    reg = cbp(model, replacement_rate=1.0, maturity_threshold=0, init="default")
    x, _, _ = batch(0)
    model(x)
    h = hidden(model, x).detach()
    w_out = model[2].weight.detach().clone()
    before = model(x[:3]).detach()
    model.eval()  # keep this probe out of the record
    reg.after_step(model, torch.optim.SGD(model.parameters(), lr=0.0), 0)
    after = model(x[:3]).detach()
    # every unit was eligible (age 1 > 0) and ρ = 1: all replaced
    assert torch.equal(model[2].weight, torch.zeros_like(w_out))
    assert torch.equal(model[0].bias, torch.zeros(8, dtype=D))
    assert float(model[0].weight.detach().abs().max()) <= math.sqrt(1 / FEATURES)
    assert torch.equal(reg.layers[0].ages, torch.zeros(8, dtype=torch.long))
    # output change = w_out·(ĥ − h(x)) with ĥ the (bias-corrected) mean activation
    torch.testing.assert_close(
        after - before, (h.mean(0) - h[:3]) @ w_out.T, rtol=1e-10, atol=1e-12
    )


def test_cbp_never_replaces_immature_units_and_rho_zero_is_backprop() -> None:
    plain, mature, off = mlp(), mlp(), mlp()
    regs = {
        "mature": stack_of(
            {"name": "continual_backprop", "replacement_rate": 1.0, "maturity_threshold": 4}
        ),
        "off": stack_of(
            {"name": "continual_backprop", "replacement_rate": 0.0, "maturity_threshold": 0}
        ),
    }
    regs["mature"].configure_model(mature)
    regs["off"].configure_model(off)
    sgd = {
        name: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        for name, m in [("plain", plain), ("mature", mature), ("off", off)]
    }
    run(stack_of(), plain, sgd["plain"], 0, 4)
    run(regs["mature"], mature, sgd["mature"], 0, 4)
    run(regs["off"], off, sgd["off"], 0, 8)
    # ages 1..4 ≤ m = 4: nothing replaced yet
    assert all(
        torch.equal(a, b) for a, b in zip(plain.parameters(), mature.parameters(), strict=True)
    )
    run(stack_of(), plain, sgd["plain"], 4, 8)
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), off.parameters(), strict=True))
    run(regs["mature"], mature, sgd["mature"], 4, 5)  # age 5 > 4: all replaced, momenta zeroed
    assert torch.equal(mature[2].weight, torch.zeros_like(mature[2].weight))
    momentum = sgd["mature"].state[mature[2].weight]["momentum_buffer"]
    assert torch.equal(momentum, torch.zeros_like(momentum))


def test_cbp_fractional_replacements_accumulate() -> None:
    model = mlp()
    reg = cbp(model, replacement_rate=0.05, maturity_threshold=0)  # 0.4 units per step
    x, _, _ = batch(0)
    replaced = []
    for step in range(5):
        model(x)
        reg.after_step(model, torch.optim.SGD(model.parameters(), lr=0.0), step)
        replaced.append(int((reg.layers[0].ages == 0).sum()))
    assert replaced == [0, 0, 1, 0, 1]  # 0.4, 0.8, 1.2 → 1 (0.2 left), 0.6, 1.0 → 1
    state = roundtrip(reg.state_dict())
    twin = cbp(mlp(), replacement_rate=0.05, maturity_threshold=0)
    twin.load_state_dict(state)
    for key in ("utility", "mean_act", "ages"):
        assert all(
            torch.equal(a, b) for a, b in zip(state[key], twin.state_dict()[key], strict=True)
        )
    assert twin.layers[0].accumulated == pytest.approx(reg.layers[0].accumulated, abs=0)


def test_cbp_needs_a_sequential_hidden_layer() -> None:
    with pytest.raises(ValueError, match="no hidden layer"):
        cbp(nn.Sequential(nn.Linear(FEATURES, CLASSES)))


def test_cbp_ignores_forwards_of_deep_copies() -> None:
    model = mlp()
    reg = cbp(model)
    twin = copy.deepcopy(model)  # as EMA / SWA keep: shares the hook function, not the record
    twin(batch(0)[0])
    assert reg.layers[0].features is None
