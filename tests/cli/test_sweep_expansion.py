"""Sweep expansion: grid products, seeded random draws, and each child checked before storing."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from client.cli import parse_grid, parse_random
from service.sweeps import MAX_CHILDREN, SweepRequest, child_specs, expand
from trainlib.spec import SpecError

SPEC = {
    "name": "base",
    "data": {"name": "digits", "batch_size": 32},
    "model": {"name": "mlp", "hidden": [16]},
    "optimizer": {"name": "adamw", "lr": 1e-3},
    "train": {"steps": 10},
}


def test_a_grid_is_the_cartesian_product_in_order() -> None:
    request = SweepRequest(
        spec=SPEC, grid={"optimizer.lr": [1e-3, 1e-2], "model.hidden": [[16], [32]]}
    )
    assert expand(request) == [
        {"optimizer.lr": 1e-3, "model.hidden": [16]},
        {"optimizer.lr": 1e-3, "model.hidden": [32]},
        {"optimizer.lr": 1e-2, "model.hidden": [16]},
        {"optimizer.lr": 1e-2, "model.hidden": [32]},
    ]


def test_random_draws_stay_in_range_are_seeded_and_log_uniform_on_request() -> None:
    ranges = {
        "optimizer.lr": {"low": 1e-5, "high": 1e-1, "log": True},
        "optimizer.weight_decay": {"low": 0.0, "high": 0.1},
        "train.steps": {"low": 5, "high": 20, "integer": True},
    }
    request = SweepRequest(spec=SPEC, random=ranges, trials=200, seed=7)
    points = expand(request)
    assert len(points) == 200
    assert points == expand(request)  # the same seed, the same children
    assert points != expand(request.model_copy(update={"seed": 8}))
    lrs = [p["optimizer.lr"] for p in points]
    assert all(1e-5 <= v <= 1e-1 for v in lrs)
    # Log-uniform: about half the draws fall below the geometric mean 1e-3.
    below = sum(v < 1e-3 for v in lrs)
    assert 70 < below < 130
    assert all(0.0 <= p["optimizer.weight_decay"] <= 0.1 for p in points)
    assert all(isinstance(p["train.steps"], int) and 5 <= p["train.steps"] <= 20 for p in points)


def test_grid_times_random_gives_trials_per_grid_point() -> None:
    request = SweepRequest(
        spec=SPEC,
        grid={"optimizer.name": ["sgd", "adamw"]},
        random={"optimizer.lr": {"low": 0.01, "high": 0.1}},
        trials=3,
    )
    points = expand(request)
    assert [p["optimizer.name"] for p in points] == ["sgd"] * 3 + ["adamw"] * 3
    assert len({p["optimizer.lr"] for p in points}) == 6


@pytest.mark.parametrize(
    "body",
    [
        {},  # neither grid nor random
        {"random": {"optimizer.lr": {"low": 0.1, "high": 0.2}}},  # no trials
        {"grid": {"optimizer.lr": [0.1]}, "trials": 2},  # trials without random
        {"grid": {"optimizer.lr": []}},
        {"grid": {"optimizer..lr": [0.1]}},
        {"random": {"optimizer.lr": {"low": 0.2, "high": 0.1}}, "trials": 1},
        {"random": {"optimizer.lr": {"low": 0.0, "high": 0.1, "log": True}}, "trials": 1},
        {"grid": {"optimizer.lr": [0.1]}, "goal": "best"},
    ],
)
def test_inconsistent_requests_are_rejected(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SweepRequest.model_validate({"spec": SPEC, **body})


def test_too_many_children_are_refused() -> None:
    side = math.isqrt(MAX_CHILDREN) + 1
    request = SweepRequest(
        spec=SPEC, grid={"seed": list(range(side)), "train.steps": list(range(1, side + 1))}
    )
    with pytest.raises(SpecError, match="at most"):
        expand(request)


def test_every_child_is_validated_and_the_error_names_child_and_path() -> None:
    request = SweepRequest(name="lr", spec=SPEC, grid={"optimizer.lr": [1e-3, 1e6, -1.0]})
    with pytest.raises(SpecError) as caught:
        child_specs(request, expand(request))
    paths = [e["path"] for e in caught.value.errors]
    assert paths == ["children[1].optimizer.lr", "children[2].optimizer.lr"]
    assert "optimizer.lr=1000000.0" in caught.value.errors[0]["message"]


def test_valid_children_get_numbered_names_and_their_overrides() -> None:
    request = SweepRequest(name="lr", spec=SPEC, grid={"optimizer.lr": [1e-3, 1e-2]})
    children = child_specs(request, expand(request))
    assert [c["name"] for c in children] == ["lr-0", "lr-1"]
    assert [c["optimizer"]["lr"] for c in children] == [1e-3, 1e-2]
    assert SPEC["name"] == "base"


def test_a_path_into_a_missing_list_item_names_the_child() -> None:
    request = SweepRequest(spec=SPEC, grid={"regularizers[0].strength": [0.1]})
    with pytest.raises(SpecError) as caught:
        child_specs(request, expand(request))
    assert caught.value.errors[0]["path"] == "children[0]"
    assert "no index 0" in caught.value.errors[0]["message"]


def test_cli_grid_and_random_options_parse_into_the_request_shape() -> None:
    assert parse_grid(["optimizer.lr=1e-3,1e-2", "model.hidden=[16],[32]"]) == {
        "optimizer.lr": [0.001, 0.01],
        "model.hidden": [[16], [32]],
    }
    assert parse_random(["optimizer.lr=1e-4:1e-1:log", "train.steps=5:20:int"]) == {
        "optimizer.lr": {"low": 1e-4, "high": 0.1, "log": True, "integer": False},
        "train.steps": {"low": 5.0, "high": 20.0, "log": False, "integer": True},
    }
