"""Properties every registered optimizer must have, with its default settings."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import trainlib.spec  # noqa: F401  (registers every component)
from tests.optim.helpers import (
    assert_resumes_bit_identically,
    assert_spec_error,
    assert_untouched_without_grad,
    make_params,
    quadratic_problem,
    step_once,
    train_tiny_job,
)
from trainlib import build_optimizer
from trainlib.catalog import catalog
from trainlib.registries import OPTIMIZERS

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
    assert_untouched_without_grad(default_spec(name))


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
    assert_spec_error({"name": name, "lr": -0.1}, "optimizer.lr")


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
    train_tiny_job(default_spec(name), steps=30)
