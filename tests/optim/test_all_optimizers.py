"""Properties every registered optimizer must have, with its default settings."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import trainlib.spec  # noqa: F401  (registers every component)
from tests.optim.helpers import (
    assert_resumes_bit_identically,
    make_params,
    quadratic_problem,
    step_once,
)
from trainlib import build_optimizer, parse_spec, train
from trainlib.catalog import catalog
from trainlib.registries import OPTIMIZERS
from trainlib.spec import SpecError

WRAPPERS = {"sam", "asam"}
ALL = OPTIMIZERS.names()
PLAIN = [n for n in ALL if n not in WRAPPERS]


def default_spec(name: str) -> dict:
    return {"name": name}


@pytest.mark.parametrize("name", ALL)
def test_resumes_bit_identically_with_defaults(name: str) -> None:
    assert_resumes_bit_identically(default_spec(name), quadratic_problem(seed=3))


@pytest.mark.parametrize("name", ALL)
def test_parameters_without_gradients_stay_untouched(name: str) -> None:
    used = nn.Parameter(torch.randn(3, 2, dtype=torch.float64))
    frozen = nn.Parameter(torch.randn(3, 2, dtype=torch.float64))
    before = frozen.detach().clone()
    optimizer = build_optimizer(
        default_spec(name), [("used.weight", used), ("frozen.weight", frozen)]
    )
    for _ in range(3):
        optimizer.zero_grad(set_to_none=True)
        loss = (used**2).sum()
        loss.backward()
        if getattr(optimizer, "two_pass", False):
            optimizer.step(lambda: (used**2).sum().backward())
        elif getattr(optimizer, "needs_loss", False):
            optimizer.step(loss=loss.detach())
        else:
            optimizer.step()
    assert torch.equal(frozen.detach(), before)
    assert frozen.grad is None
    assert frozen not in optimizer.state or not optimizer.state[frozen]


@pytest.mark.parametrize("name", ALL)
def test_listed_in_the_catalog_with_a_schema_and_summary(name: str) -> None:
    entry = next(e for e in catalog()["optimizer"] if e["name"] == name)
    assert entry["summary"]
    assert entry["schema"]["type"] == "object"
    assert "name" in entry["schema"]["properties"]
    if name not in WRAPPERS:
        assert {"lr", "weight_decay", "clip", "groups"} <= set(entry["schema"]["properties"])


@pytest.mark.parametrize("name", PLAIN)
def test_negative_learning_rate_is_rejected_with_its_path(name: str) -> None:
    raw = {
        "data": {"name": "digits"},
        "model": {"name": "mlp"},
        "optimizer": {"name": name, "lr": -0.1},
        "train": {"steps": 1},
    }
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    assert "optimizer.lr" in [e["path"] for e in info.value.errors]


@pytest.mark.parametrize("name", ALL)
def test_default_settings_take_a_finite_step(name: str) -> None:
    problem = quadratic_problem(seed=4)
    params = make_params(problem)
    start = copy.deepcopy([p.detach() for _, p in params])
    optimizer = build_optimizer(default_spec(name), params)
    loss = step_once(optimizer, params, problem)
    assert math.isfinite(loss)
    assert all(torch.isfinite(p).all() for _, p in params)
    assert any(not torch.equal(p.detach(), s) for (_, p), s in zip(params, start, strict=True))


@pytest.mark.parametrize("name", ALL)
def test_trains_a_tiny_job_in_the_loop(name: str) -> None:
    spec = parse_spec(
        {
            "seed": 0,
            "data": {"name": "digits", "batch_size": 64},
            "model": {"name": "mlp", "hidden": [32]},
            "optimizer": {"name": name},
            "train": {"steps": 30, "log_every": 10, "eval_every": 30, "device": "cpu"},
        }
    )
    result = train(spec)
    assert result.status == "completed"
    assert math.isfinite(result.final_metrics["loss"])
