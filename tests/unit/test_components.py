"""Built-in components against independent references: optimizers, schedules, loss, model, data."""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from trainlib import build_optimizer
from trainlib.components.datasets import split_indices
from trainlib.data import DataInfo
from trainlib.registries import DATASETS, LOSSES, MODELS, SCHEDULES
from trainlib.spec import SpecError, parse_spec

# --- optimizers: construction and validation -------------------------------------------------


def test_build_adamw_returns_torch_adamw_with_settings() -> None:
    params = [nn.Parameter(torch.zeros(3, 2))]
    opt = build_optimizer(
        {"name": "adamw", "lr": 3e-3, "betas": [0.8, 0.95], "weight_decay": 0.05, "eps": 1e-6},
        params,
    )
    assert isinstance(opt, torch.optim.AdamW)
    group = opt.param_groups[0]
    assert group["lr"] == 3e-3
    assert tuple(group["betas"]) == (0.8, 0.95)
    assert group["weight_decay"] == 0.05
    assert group["eps"] == 1e-6
    assert group["params"] == params


@pytest.mark.parametrize(
    ("name", "cls"),
    [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)],
)
def test_build_optimizer_by_name(name: str, cls: type[torch.optim.Optimizer]) -> None:
    opt = build_optimizer({"name": name, "lr": 0.01}, [nn.Parameter(torch.zeros(2))])
    assert type(opt) is cls
    assert opt.param_groups[0]["lr"] == 0.01


def test_build_sgd_with_momentum_and_nesterov() -> None:
    opt = build_optimizer(
        {
            "name": "sgd",
            "groups": {"no_decay": []},  # decay every tensor, as the reference does
            "lr": 0.2,
            "momentum": 0.9,
            "nesterov": True,
            "weight_decay": 1e-4,
        },
        [nn.Parameter(torch.zeros(2))],
    )
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"]) == (0.2, 0.9, True)
    assert group["weight_decay"] == 1e-4


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "sgd", "nesterov": True},
        {"name": "sgd", "nesterov": True, "momentum": 0.9, "dampening": 0.1},
    ],
)
def test_sgd_nesterov_without_momentum_is_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="nesterov"):
        build_optimizer(bad, [nn.Parameter(torch.zeros(2))])
    raw = {
        "data": {"name": "digits"},
        "model": {"name": "mlp"},
        "optimizer": bad,
        "train": {"steps": 1},
    }
    with pytest.raises(SpecError, match="nesterov"):
        parse_spec(raw)


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "adamw", "lr": 0},
        {"name": "adamw", "betas": [0.9, 1.0]},
        {"name": "adam", "betas": [-0.1, 0.9]},
        {"name": "adamw", "bogus": 1},
        {"name": "no_such_optimizer"},
    ],
)
def test_build_optimizer_rejects_bad_settings(bad: dict[str, Any]) -> None:
    with pytest.raises((ValidationError, KeyError)):
        build_optimizer(bad, [nn.Parameter(torch.zeros(2))])


# --- optimizers against NumPy references -----------------------------------------------------

STEPS = 20


class Quadratic:
    """f(w, U) = 1/2 w^T A w - b^T w + 1/2 sum(D * U^2) - sum(C * U), with A SPD and D > 0."""

    def __init__(self) -> None:
        rng = np.random.default_rng(1234)
        m = rng.normal(size=(5, 5))
        self.A = m @ m.T + 0.5 * np.eye(5)
        self.b = rng.normal(size=5)
        self.D = rng.uniform(0.5, 3.0, size=(3, 4))
        self.C = rng.normal(size=(3, 4))
        self.w0 = rng.normal(size=5)
        self.U0 = rng.normal(size=(3, 4))

    def grads(self, w: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.A @ w - self.b, self.D * U - self.C

    def run_torch(self, spec: dict[str, Any]) -> list[np.ndarray]:
        w = nn.Parameter(torch.tensor(self.w0, dtype=torch.float64))
        U = nn.Parameter(torch.tensor(self.U0, dtype=torch.float64))
        A, b, D, C = (
            torch.tensor(v, dtype=torch.float64) for v in (self.A, self.b, self.D, self.C)
        )
        opt = build_optimizer(spec, [w, U])
        for _ in range(STEPS):
            opt.zero_grad()
            loss = 0.5 * w @ A @ w - b @ w + 0.5 * (D * U * U).sum() - (C * U).sum()
            loss.backward()
            opt.step()
        return [w.detach().numpy(), U.detach().numpy()]


def numpy_adam(
    q: Quadratic, lr: float, b1: float, b2: float, eps: float, wd: float, decoupled: bool
) -> list[np.ndarray]:
    params = [q.w0.copy(), q.U0.copy()]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in range(1, STEPS + 1):
        grads = list(q.grads(*params))
        for i, p in enumerate(params):
            g = grads[i]
            if decoupled:
                p = p * (1 - lr * wd)  # AdamW: decay the weights directly
            else:
                g = g + wd * p  # Adam: L2 term in the gradient
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat = m[i] / (1 - b1**t)
            v_hat = v[i] / (1 - b2**t)
            params[i] = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return params


def numpy_sgd(
    q: Quadratic, lr: float, momentum: float, wd: float, nesterov: bool
) -> list[np.ndarray]:
    params = [q.w0.copy(), q.U0.copy()]
    buf: list[np.ndarray | None] = [None, None]
    for _ in range(STEPS):
        grads = list(q.grads(*params))
        for i, p in enumerate(params):
            g = grads[i] + wd * p
            b = g.copy() if buf[i] is None else momentum * buf[i] + g
            buf[i] = b
            update = g + momentum * b if nesterov else b
            params[i] = p - lr * update
    return params


def assert_params_close(ours: list[np.ndarray], ref: list[np.ndarray]) -> None:
    for a, r in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a, r, rtol=0, atol=1e-10)


def test_adamw_matches_numpy_reference() -> None:
    q = Quadratic()
    hp = {"lr": 0.05, "b1": 0.9, "b2": 0.99, "eps": 1e-8, "wd": 0.1}
    spec = {
        "name": "adamw",
        "groups": {"no_decay": []},  # decay every tensor, as the reference does
        "lr": hp["lr"],
        "betas": [hp["b1"], hp["b2"]],
        "eps": hp["eps"],
        "weight_decay": hp["wd"],
    }
    ours = q.run_torch(spec)
    ref = numpy_adam(q, **hp, decoupled=True)
    assert_params_close(ours, ref)
    # The reference is sensitive to the decay being decoupled: coupled decay lands elsewhere.
    coupled = numpy_adam(q, **hp, decoupled=False)
    assert np.abs(ours[0] - coupled[0]).max() > 1e-6
    # And it actually moved.
    assert np.abs(ours[0] - q.w0).max() > 0.1


def test_adam_matches_numpy_reference_with_coupled_decay() -> None:
    q = Quadratic()
    hp = {"lr": 0.03, "b1": 0.85, "b2": 0.995, "eps": 1e-8, "wd": 0.05}
    spec = {
        "name": "adam",
        "groups": {"no_decay": []},  # decay every tensor, as the reference does
        "lr": hp["lr"],
        "betas": [hp["b1"], hp["b2"]],
        "eps": hp["eps"],
        "weight_decay": hp["wd"],
    }
    assert_params_close(q.run_torch(spec), numpy_adam(q, **hp, decoupled=False))


@pytest.mark.parametrize("nesterov", [True, False])
def test_sgd_momentum_matches_numpy_reference(nesterov: bool) -> None:
    q = Quadratic()
    spec = {
        "name": "sgd",
        "groups": {"no_decay": []},  # decay every tensor, as the reference does
        "lr": 0.02,
        "momentum": 0.9,
        "nesterov": nesterov,
        "weight_decay": 0.01,
    }
    ours = q.run_torch(spec)
    assert_params_close(ours, numpy_sgd(q, 0.02, 0.9, 0.01, nesterov=nesterov))
    other = numpy_sgd(q, 0.02, 0.9, 0.01, nesterov=not nesterov)
    assert np.abs(ours[0] - other[0]).max() > 1e-6


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "adamw", "lr": 0.01, "weight_decay": 0.1},
        {"name": "adam", "lr": 0.01, "amsgrad": True},
        {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
    ],
    ids=["adamw", "adam-amsgrad", "sgd-nesterov"],
)
def test_optimizer_state_dict_round_trip_is_bit_identical(spec: dict[str, Any]) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    x = torch.randn(32, 6)
    y = torch.randint(0, 3, (32,))

    def step(m: nn.Module, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()

    opt = build_optimizer(spec, model.parameters())
    for _ in range(5):
        step(model, opt)
    saved = copy.deepcopy(opt.state_dict())
    assert saved["state"], "the optimizer should have state after 5 steps"

    clone = copy.deepcopy(model)
    fresh = build_optimizer(spec, clone.parameters())
    fresh.load_state_dict(saved)
    for _ in range(5):
        step(model, opt)
        step(clone, fresh)
    for a, b in zip(model.parameters(), clone.parameters(), strict=True):
        assert torch.equal(a, b)

    # Without the state, the continuation differs (the test can tell).
    clone2 = copy.deepcopy(model)
    restart = build_optimizer(spec, clone2.parameters())
    step(model, opt)
    step(clone2, restart)
    assert any(
        not torch.equal(a, b) for a, b in zip(model.parameters(), clone2.parameters(), strict=True)
    )


# --- schedules --------------------------------------------------------------------------------


def lr_trace(schedule: dict[str, Any], total_steps: int, base_lr: float = 0.5) -> list[float]:
    """The learning rate in effect at optimizer steps 0, 1, ..., total_steps."""
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=base_lr)
    sched = SCHEDULES.build(schedule, opt, total_steps)
    trace = []
    for _ in range(total_steps + 1):
        trace.append(opt.param_groups[0]["lr"] / base_lr)
        opt.step()
        sched.step()
    return trace


def cosine(t: float, min_ratio: float) -> float:
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def test_cosine_with_warmup_at_known_steps() -> None:
    warmup, total, min_ratio = 10, 110, 0.1
    trace = lr_trace({"name": "cosine", "warmup_steps": warmup, "min_lr_ratio": min_ratio}, total)
    expected = {
        0: 1 / warmup,  # first step of linear warmup
        4: 5 / warmup,
        warmup - 1: 1.0,  # last warmup step reaches the full rate
        warmup: 1.0,  # decay starts at its peak
        warmup + 25: cosine(0.25, min_ratio),
        warmup + 50: 0.5 * (1 + min_ratio),  # halfway through the decay
        warmup + 75: cosine(0.75, min_ratio),
        total: min_ratio,  # the end
    }
    for step, value in expected.items():
        assert trace[step] == pytest.approx(value, abs=1e-12), step
    # Warmup rises, decay falls monotonically and never goes below the floor.
    assert all(a < b for a, b in itertools.pairwise(trace[:warmup]))
    decay = trace[warmup:]
    assert all(a >= b for a, b in itertools.pairwise(decay))
    assert min(trace) >= min_ratio - 1e-12


def test_cosine_without_warmup_decays_to_zero_by_default() -> None:
    trace = lr_trace({"name": "cosine"}, 40)
    assert trace[0] == pytest.approx(1.0)
    assert trace[20] == pytest.approx(0.5)
    assert trace[10] == pytest.approx(cosine(0.25, 0.0))
    assert trace[40] == pytest.approx(0.0, abs=1e-12)


def test_cosine_restarts_per_cycle() -> None:
    trace = lr_trace({"name": "cosine", "cycles": 2, "min_lr_ratio": 0.2}, 100)
    assert trace[0] == pytest.approx(1.0)
    assert trace[25] == pytest.approx(cosine(0.5, 0.2))
    assert trace[49] == pytest.approx(cosine(49 / 50, 0.2))
    assert trace[50] == pytest.approx(1.0)  # restart
    assert trace[75] == pytest.approx(cosine(0.5, 0.2))


def test_constant_with_warmup() -> None:
    trace = lr_trace({"name": "constant", "warmup_steps": 4}, 20)
    assert trace[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert trace[4:] == pytest.approx([1.0] * 17)


def test_constant_without_warmup_is_constant() -> None:
    assert lr_trace({"name": "constant"}, 10) == pytest.approx([1.0] * 11)


# --- loss -------------------------------------------------------------------------------------


def _logits_and_targets() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.randn(16, 5, generator=g, dtype=torch.float64) * 3, torch.randint(
        0, 5, (16,), generator=g
    )


def test_cross_entropy_without_smoothing_matches_torch() -> None:
    logits, y = _logits_and_targets()
    loss = LOSSES.build({"name": "cross_entropy"})
    torch.testing.assert_close(loss(logits, y), F.cross_entropy(logits, y))


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.5])
def test_cross_entropy_with_label_smoothing_by_hand(eps: float) -> None:
    logits, y = _logits_and_targets()
    loss = LOSSES.build({"name": "cross_entropy", "label_smoothing": eps})(logits, y)
    logp = logits - logits.exp().sum(-1, keepdim=True).log()  # log-softmax, by hand
    nll = -logp[torch.arange(len(y)), y].mean()
    uniform = (-logp).mean(-1).mean()
    expected = (1 - eps) * nll + eps * uniform
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)
    assert not torch.allclose(loss, nll)


# --- model ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(64,), (1, 8, 8)])
def test_mlp_output_shape(shape: tuple[int, ...]) -> None:
    model = MODELS.build({"name": "mlp", "hidden": [16, 8]}, DataInfo(shape, 10))
    out = model(torch.randn(5, *shape))
    assert out.shape == (5, 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 16), (16, 8), (8, 10)]


def test_mlp_layernorm_inserts_one_layernorm_per_hidden_layer() -> None:
    info = DataInfo((64,), 10)
    with_norm = MODELS.build({"name": "mlp", "hidden": [16, 8], "norm": "layernorm"}, info)
    norms = [m for m in with_norm.modules() if isinstance(m, nn.LayerNorm)]
    assert [tuple(n.normalized_shape) for n in norms] == [(16,), (8,)]
    without = MODELS.build({"name": "mlp", "hidden": [16, 8]}, info)
    assert not any(isinstance(m, nn.LayerNorm) for m in without.modules())


def test_mlp_norm_actually_normalizes_hidden_activations() -> None:
    torch.manual_seed(0)
    model = MODELS.build({"name": "mlp", "hidden": [32], "norm": "layernorm"}, DataInfo((64,), 10))
    norm = next(m for m in model.modules() if isinstance(m, nn.LayerNorm))
    seen: list[torch.Tensor] = []
    norm.register_forward_hook(lambda _m, _i, out: seen.append(out))
    model(torch.randn(4, 64) * 50 + 7)
    torch.testing.assert_close(seen[0].mean(-1), torch.zeros(4), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("activation", "cls"), [("gelu", nn.GELU), ("tanh", nn.Tanh)])
def test_mlp_activation(activation: str, cls: type[nn.Module]) -> None:
    model = MODELS.build(
        {"name": "mlp", "hidden": [4, 4], "activation": activation}, DataInfo((3,), 2)
    )
    assert sum(isinstance(m, cls) for m in model.modules()) == 2


# --- data -------------------------------------------------------------------------------------


def test_split_indices_is_a_seeded_partition() -> None:
    train_a, val_a = split_indices(100, 0.25, seed=3)
    train_b, val_b = split_indices(100, 0.25, seed=3)
    assert torch.equal(val_a, val_b) and torch.equal(train_a, train_b)
    assert len(val_a) == 25 and len(train_a) == 75
    assert sorted(torch.cat([train_a, val_a]).tolist()) == list(range(100))
    _, val_c = split_indices(100, 0.25, seed=4)
    assert set(val_c.tolist()) != set(val_a.tolist())


def test_digits_split_is_seeded() -> None:
    a = DATASETS.build({"name": "digits"}, seed=0)
    b = DATASETS.build({"name": "digits"}, seed=0)
    c = DATASETS.build({"name": "digits"}, seed=1)
    assert torch.equal(a.val_x, b.val_x) and torch.equal(a.val_y, b.val_y)
    assert torch.equal(a.train_x, b.train_x)
    assert a.val_x.shape == c.val_x.shape
    assert not torch.equal(a.val_y, c.val_y)
    assert len(a.train_x) + len(a.val_x) == 1797
    assert len(a.val_x) == round(1797 * 0.2)
    assert a.info.num_classes == 10 and a.info.input_shape == (64,)
    assert a.train_x.dtype == torch.float32 and a.train_y.dtype == torch.long


def test_digits_standardizes_with_training_statistics() -> None:
    from sklearn.datasets import load_digits

    data = DATASETS.build({"name": "digits", "val_fraction": 0.3}, seed=5)
    raw = torch.tensor(load_digits().data, dtype=torch.float32)
    # Train features: mean 0, and unit std wherever the raw feature varies.
    torch.testing.assert_close(data.train_x.mean(0), torch.zeros(64), atol=1e-4, rtol=0)
    std = data.train_x.std(0)
    varying = std > 1e-2
    assert varying.sum() > 50
    torch.testing.assert_close(std[varying], torch.ones(int(varying.sum())), atol=1e-3, rtol=0)
    # Statistics from the whole set would centre train+val instead; they must not.
    everything = torch.cat([data.train_x, data.val_x])
    assert everything.mean(0).abs().max() > 1e-2
    # The transform is affine per feature: val = (raw_val - mean_train) / std_train.
    train_idx, val_idx = split_indices(len(raw), 0.3, seed=5)
    raw_train, raw_val = raw[train_idx], raw[val_idx]
    feature = int(torch.argmax(raw_train.std(0)))
    mean, scale = raw_train[:, feature].mean(), raw_train[:, feature].std()
    torch.testing.assert_close(data.val_x[:, feature], (raw_val[:, feature] - mean) / scale)


def test_digits_unflattened_shape() -> None:
    data = DATASETS.build({"name": "digits", "flatten": False, "batch_size": 32}, seed=0)
    assert data.train_x.shape[1:] == (1, 8, 8)
    assert data.info.input_shape == (1, 8, 8)
    assert data.batch_size == 32
    assert data.steps_per_epoch == math.ceil(len(data.train_x) / 32)
