"""The optimizer framework: parameter groups, gradient transforms, SAM/ASAM, spec plumbing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from trainlib import build_optimizer, parse_spec
from trainlib.optim.clip import adaptive_clip_, unitwise_norm
from trainlib.spec import SpecError
from trainlib.step import train_step


def small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 8), nn.BatchNorm1d(8),
        nn.ReLU(), nn.Linear(8, 3),
    )  # fmt: skip


def groups_by_name(optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    return {name: g for g in optimizer.param_groups for name in g["names"]}


# --- parameter groups ---------------------------------------------------------------------------


def test_no_decay_on_biases_and_norm_parameters_by_default() -> None:
    opt = build_optimizer({"name": "adamw", "weight_decay": 0.1}, small_net())
    groups = groups_by_name(opt)
    decayed = {n for n, g in groups.items() if g["weight_decay"] > 0}
    assert decayed == {"0.weight", "3.weight", "6.weight"}
    for name in ("0.bias", "1.weight", "1.bias", "4.weight", "4.bias", "6.bias"):
        assert groups[name]["weight_decay"] == 0.0, name


def test_no_decay_is_configurable() -> None:
    every = build_optimizer(
        {"name": "adamw", "weight_decay": 0.1, "groups": {"no_decay": []}}, small_net()
    )
    assert all(g["weight_decay"] == 0.1 for g in every.param_groups)
    pattern = build_optimizer(
        {"name": "adamw", "weight_decay": 0.1, "groups": {"no_decay": ["6.*"]}}, small_net()
    )
    groups = groups_by_name(pattern)
    assert groups["6.weight"]["weight_decay"] == 0.0
    assert groups["0.bias"]["weight_decay"] == 0.1


def test_lr_multipliers_by_pattern_and_layer_decay() -> None:
    opt = build_optimizer(
        {"name": "sgd", "lr": 0.1, "groups": {"lr_multipliers": {"6.*": 10.0, "0.bias": 0.5}}},
        small_net(),
    )
    groups = groups_by_name(opt)
    assert groups["6.weight"]["lr"] == pytest.approx(1.0)
    assert groups["0.bias"]["lr"] == pytest.approx(0.05)
    assert groups["3.weight"]["lr"] == pytest.approx(0.1)

    decayed = build_optimizer(
        {"name": "sgd", "lr": 0.1, "groups": {"layer_decay": 0.5}}, small_net()
    )
    groups = groups_by_name(decayed)
    # five parametrised layers: 0, 1 (LayerNorm), 3, 4 (BatchNorm), 6: the last keeps the full lr
    expected = {
        "0.weight": 0.5**4,
        "1.weight": 0.5**3,
        "3.weight": 0.5**2,
        "4.bias": 0.5,
        "6.weight": 1,
    }
    for name, scale in expected.items():
        assert groups[name]["lr"] == pytest.approx(0.1 * scale), name
        assert groups[name]["lr_scale"] == pytest.approx(scale), name


def test_lr_multipliers_survive_a_scheduler() -> None:
    model = small_net()
    opt = build_optimizer(
        {"name": "sgd", "lr": 0.1, "groups": {"lr_multipliers": {"6.*": 10.0}}}, model
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)
    opt.step()
    sched.step()
    groups = groups_by_name(opt)
    assert groups["6.weight"]["lr"] == pytest.approx(0.5)
    assert groups["0.weight"]["lr"] == pytest.approx(0.05)


def test_final_layer_is_marked() -> None:
    groups = groups_by_name(build_optimizer({"name": "sgd"}, small_net()))
    assert {n for n, g in groups.items() if g["final_layer"]} == {"6.weight", "6.bias"}


# --- gradient transforms ------------------------------------------------------------------------


def test_agc_worked_example() -> None:
    w = nn.Parameter(torch.tensor([[1.0, 2.0, 2.0], [0.001, 0.0, 0.0]], dtype=torch.float64))
    w.grad = torch.tensor([[0.01, 0.02, 0.0], [0.5, 0.0, 0.0]], dtype=torch.float64)
    adaptive_clip_([w], clip=0.01, eps=1e-3)
    expected = [[0.01, 0.02, 0.0], [1e-5, 0.0, 0.0]]
    np.testing.assert_allclose(w.grad.numpy(), expected, atol=1e-12)


def test_agc_bounds_every_unit_and_skips_the_final_layer() -> None:
    model = small_net()
    opt = build_optimizer({"name": "sgd", "lr": 0.0001, "clip": {"agc": 0.01}}, model)
    x = torch.randn(16, 4)
    loss = model(x).pow(2).sum() * 1e3  # large gradients: AGC must bite
    loss.backward()
    before_final = model[6].weight.grad.clone()
    opt.step()  # the clip runs as a step pre-hook, then the update
    for layer in (model[0], model[3]):
        bound = unitwise_norm(layer.weight.detach()).clamp_min(1e-3) * 0.01
        assert (unitwise_norm(layer.weight.grad) <= bound * (1 + 1e-6)).all()
    assert torch.equal(model[6].weight.grad, before_final)


def test_norm_and_value_clipping() -> None:
    p = nn.Parameter(torch.zeros(4, dtype=torch.float64))
    opt = build_optimizer({"name": "sgd", "lr": 1.0, "clip": {"norm": 1.0}}, [p])
    p.grad = torch.tensor([3.0, 4.0, 0.0, 0.0], dtype=torch.float64)
    opt.step()
    np.testing.assert_allclose(p.detach().numpy(), [-0.6, -0.8, 0, 0], atol=1e-6)

    q = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = build_optimizer({"name": "sgd", "lr": 1.0, "clip": {"value": 0.5}}, [q])
    q.grad = torch.tensor([2.0, -0.1, -3.0], dtype=torch.float64)
    opt.step()
    np.testing.assert_allclose(q.detach().numpy(), [-0.5, 0.1, 0.5])


def test_train_grad_clip_norm_is_an_alias_of_optimizer_clip_norm() -> None:
    base = {"data": {"name": "digits"}, "model": {"name": "mlp"}}
    spec = parse_spec(
        {**base, "optimizer": {"name": "sgd"}, "train": {"steps": 1, "grad_clip_norm": 2.0}}
    )
    assert spec.optimizer.clip.norm == 2.0
    sam = parse_spec(
        {**base, "optimizer": {"name": "sam", "base": {"name": "sgd"}},
         "train": {"steps": 1, "grad_clip_norm": 2.0}}
    )  # fmt: skip
    assert sam.optimizer.base.clip.norm == 2.0
    with pytest.raises(SpecError, match="not both"):
        parse_spec(
            {**base, "optimizer": {"name": "sgd", "clip": {"norm": 1.0}},
             "train": {"steps": 1, "grad_clip_norm": 2.0}}
        )  # fmt: skip


# --- SAM and ASAM -------------------------------------------------------------------------------


def quadratic_step(spec: dict, name: str = "weight") -> np.ndarray:
    w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    a = torch.tensor([1.0, 4.0], dtype=torch.float64)
    opt = build_optimizer(spec, [(name, w)])

    def closure() -> torch.Tensor:
        loss = 0.5 * (a * w * w).sum()
        loss.backward()
        return loss

    opt.zero_grad()
    closure()
    opt.step(closure)
    return w.detach().numpy()


def test_sam_worked_example() -> None:
    w = quadratic_step({"name": "sam", "rho": 0.05, "base": {"name": "sgd", "lr": 0.1}})
    np.testing.assert_allclose(w, [0.8993798263, -1.1801544425], atol=1e-9)


def test_asam_worked_examples() -> None:
    spec = {"name": "asam", "rho": 0.5, "eta": 0.01, "base": {"name": "sgd", "lr": 0.1}}
    np.testing.assert_allclose(quadratic_step(spec), [0.8968342858, -0.7987906495], atol=1e-9)
    spec["eta"] = 0.0
    np.testing.assert_allclose(quadratic_step(spec), [0.8968810857, -0.8007789686], atol=1e-9)


@pytest.mark.parametrize("name", ["sam", "asam"])
def test_perturbation_has_norm_rho(name: str) -> None:
    model = small_net()
    opt = build_optimizer({"name": name, "rho": 0.07, "base": {"name": "sgd"}}, model)
    model(torch.randn(16, 4)).pow(2).mean().backward()
    before = [p.detach().clone() for p in model.parameters()]
    opt.first_step()
    moved = [p.detach() - b for p, b in zip(model.parameters(), before, strict=True)]
    if name == "sam":
        norm = math.sqrt(sum(float(m.pow(2).sum()) for m in moved))
        assert norm == pytest.approx(0.07, rel=1e-5)
    else:  # ASAM bounds ‖T⁻¹ ε̂‖ = ρ
        total = 0.0
        for (n, _), m, b in zip(model.named_parameters(), moved, before, strict=True):
            t = b.abs() + 0.01 if "weight" in n else torch.ones_like(b)
            total += float((m / t).pow(2).sum())
        assert math.sqrt(total) == pytest.approx(0.07, rel=1e-5)


def test_sam_updates_batchnorm_statistics_on_the_first_pass_only() -> None:
    torch.manual_seed(1)
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    loss_fn = nn.CrossEntropyLoss()

    plain, sam_model = small_net(), small_net()
    sgd = build_optimizer({"name": "sgd", "lr": 0.1}, plain)
    sam = build_optimizer(
        {"name": "sam", "rho": 0.05, "base": {"name": "sgd", "lr": 0.1}}, sam_model
    )
    plain_loss, _ = train_step(plain, sgd, x, y, loss_fn)
    sam_loss, _ = train_step(sam_model, sam, x, y, loss_fn)

    # one pass worth of statistics, identical to a plain step's first (and only) pass
    assert torch.equal(plain[4].running_mean, sam_model[4].running_mean)
    assert torch.equal(plain[4].running_var, sam_model[4].running_var)
    assert int(sam_model[4].num_batches_tracked) == 1
    assert torch.equal(plain_loss, sam_loss)  # the logged loss is the first pass's
    assert not torch.equal(plain[0].weight, sam_model[0].weight)  # but the update differs


def test_sam_state_is_the_base_optimizers() -> None:
    model = small_net()
    opt = build_optimizer({"name": "sam", "base": {"name": "sgd", "momentum": 0.9}}, model)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    train_step(model, opt, x, y, nn.CrossEntropyLoss())
    state = opt.state_dict()
    assert len(state["state"]) == len(list(model.parameters()))
    assert all("momentum_buffer" in s for s in state["state"].values())


@pytest.mark.parametrize(
    ("optimizer", "path", "needle"),
    [
        ({"name": "sam", "base": {"name": "nope"}}, "optimizer.base", "valid names"),
        ({"name": "sam", "base": {"name": "sam"}}, "optimizer.base", "plain optimizer"),
        ({"name": "sam", "rho": -1.0}, "optimizer.rho", "greater than 0"),
        ({"name": "sam", "base": {"name": "sgd", "lr": -0.1}}, "optimizer.base", "lr"),
    ],
)
def test_bad_sam_settings_name_the_field(optimizer: dict, path: str, needle: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(
            {"data": {"name": "digits"}, "model": {"name": "mlp"}, "optimizer": optimizer,
             "train": {"steps": 1}}
        )  # fmt: skip
    assert any(e["path"] == path and needle in e["message"] for e in info.value.errors), (
        info.value.errors
    )


def test_sam_passes_the_second_pass_loss_to_bases_that_need_it() -> None:
    model = small_net()
    opt = build_optimizer({"name": "sam", "base": {"name": "momo", "lr": 0.1}}, model)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    before = model[0].weight.detach().clone()
    loss, _ = train_step(model, opt, x, y, nn.CrossEntropyLoss())
    assert torch.isfinite(loss)
    assert not torch.equal(model[0].weight, before)
