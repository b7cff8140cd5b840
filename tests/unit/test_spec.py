"""The job-spec schema: defaults, error messages with field paths, and the content hash."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from trainlib.registries import DATASETS, INITS, LOSSES, MODELS, OPTIMIZERS, SCHEDULES
from trainlib.registry import Registry
from trainlib.spec import SpecError, parse_spec, resolve, spec_hash

MINIMAL: dict[str, Any] = {
    "data": {"name": "digits"},
    "model": {"name": "mlp"},
    "optimizer": {"name": "adamw"},
    "train": {"steps": 10},
}


def minimal(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(MINIMAL)
    raw.update(copy.deepcopy(changes))
    return raw


def spec_errors(raw: Any) -> list[dict[str, str]]:
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    errors = info.value.errors
    assert errors, "a SpecError must carry at least one error"
    # The exception's message repeats every (path, message) pair.
    for err in errors:
        assert err["path"] in str(info.value)
        assert err["message"] in str(info.value)
    return errors


def paths(errors: list[dict[str, str]]) -> list[str]:
    return [e["path"] for e in errors]


# --- defaults -------------------------------------------------------------------------------


def test_minimal_spec_parses_and_resolves_every_default() -> None:
    resolved = resolve(parse_spec(minimal()))

    assert resolved["init"] == {"name": "default"}
    assert resolved["schedule"]["name"] == "constant"
    assert resolved["schedule"]["warmup_steps"] == 0
    assert resolved["loss"]["name"] == "cross_entropy"
    assert resolved["loss"]["label_smoothing"] == 0.0
    assert resolved["regularizers"] == []
    assert resolved["name"] and isinstance(resolved["name"], str)
    assert resolved["seed"] == 0

    resources = resolved["resources"]
    assert set(resources) == {"gpus", "priority", "max_runtime_s", "max_attempts", "max_queue_s"}
    assert resources["priority"] == "normal"
    assert resources["gpus"] == 0
    assert resources["max_runtime_s"] >= 1
    assert resources["max_attempts"] >= 1

    train = resolved["train"]
    assert train["steps"] == 10
    assert train["epochs"] is None
    assert train["precision"] == "fp32"
    assert train["device"] == "auto"
    assert "grad_clip_norm" not in train  # an alias, resolved into optimizer.clip.norm
    assert resolved["optimizer"]["clip"] is None
    assert train["checkpoint_every"] is None
    assert train["eval_every"] >= 1
    assert train["log_every"] >= 1


def test_resolved_components_carry_all_their_settings() -> None:
    resolved = resolve(parse_spec(minimal()))
    # Each component is resolved with every field of its settings model filled in.
    for field, registry in [
        ("data", DATASETS),
        ("model", MODELS),
        ("optimizer", OPTIMIZERS),
        ("schedule", SCHEDULES),
        ("loss", LOSSES),
        ("init", INITS),
    ]:
        entry = registry.get(resolved[field]["name"])
        assert set(resolved[field]) == set(entry.settings.model_fields), field


def test_resolved_spec_is_plain_json_and_round_trips() -> None:
    resolved = resolve(parse_spec(minimal(optimizer={"name": "adamw", "lr": 0.003})))
    assert resolved["optimizer"]["lr"] == 0.003
    assert isinstance(resolved["optimizer"]["betas"], list)  # JSON, not a tuple
    # Parsing the resolved spec again gives the same spec (and the same hash).
    again = resolve(parse_spec(resolved))
    assert again == resolved
    assert spec_hash(again) == spec_hash(resolved)


def test_epochs_instead_of_steps_is_accepted() -> None:
    spec = parse_spec(minimal(train={"epochs": 2}))
    assert spec.train.epochs == 2
    assert spec.train.steps is None


# --- error messages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "registry"),
    [("optimizer", OPTIMIZERS), ("data", DATASETS), ("model", MODELS), ("schedule", SCHEDULES)],
)
def test_unknown_component_name_lists_valid_names(field: str, registry: Registry) -> None:
    errors = spec_errors(minimal(**{field: {"name": "no_such_component"}}))
    assert len(errors) == 1
    err = errors[0]
    assert err["path"].split(".")[0] == field
    assert "no_such_component" in err["message"]
    assert "valid names" in err["message"]
    assert registry.names(), "the registry should not be empty"
    for name in registry.names():
        assert name in err["message"]


@pytest.mark.parametrize(
    ("field", "registry"),
    [
        pytest.param("optimizer", OPTIMIZERS, id="optimizer"),
        pytest.param("schedule", SCHEDULES, id="schedule"),
        pytest.param("init", INITS, id="init"),
        pytest.param("model", MODELS, id="model"),
        pytest.param("data", DATASETS, id="data"),
        pytest.param("loss", LOSSES, id="loss"),
    ],
)
def test_missing_component_name_is_rejected(field: str, registry: Registry) -> None:
    errors = spec_errors(minimal(**{field: {}}))
    assert len(errors) == 1
    assert errors[0]["path"].split(".")[0] == field
    assert "name" in errors[0]["message"]
    for name in registry.names():
        assert name in errors[0]["message"]


def test_unknown_field_names_its_path() -> None:
    errors = spec_errors(minimal(model={"name": "mlp", "foo": 1}))
    assert paths(errors) == ["model.foo"]
    assert "unknown field" in errors[0]["message"]


def test_unknown_top_level_field() -> None:
    errors = spec_errors(minimal(foo=1))
    assert paths(errors) == ["foo"]


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
@pytest.mark.parametrize("lr", [0, -1e-3])
def test_non_positive_lr_is_rejected_with_a_clean_path(optimizer: str, lr: float) -> None:
    errors = spec_errors(minimal(optimizer={"name": optimizer, "lr": lr}))
    # The union tag (the optimizer's name) must not appear in the path.
    assert paths(errors) == ["optimizer.lr"]
    assert "greater than 0" in errors[0]["message"]


def test_nested_list_path_uses_an_index() -> None:
    errors = spec_errors(minimal(model={"name": "mlp", "hidden": [8, 0]}))
    assert paths(errors) == ["model.hidden[1]"]


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("schedule", {"name": "cosine", "min_lr_ratio": 2}, "schedule.min_lr_ratio"),
        ("loss", {"name": "cross_entropy", "label_smoothing": 1.0}, "loss.label_smoothing"),
        ("data", {"name": "digits", "val_fraction": 0}, "data.val_fraction"),
        ("resources", {"gpus": 3}, "resources.gpus"),
        ("seed", -1, "seed"),
        ("train", {"steps": 0}, "train.steps"),
    ],
)
def test_out_of_range_values_are_rejected(field: str, value: Any, path: str) -> None:
    errors = spec_errors(minimal(**{field: value}))
    assert paths(errors) == [path]


@pytest.mark.parametrize("train", [{"steps": 10, "epochs": 1}, {}, {"eval_every": 5}])
def test_exactly_one_of_steps_or_epochs(train: dict[str, Any]) -> None:
    errors = spec_errors(minimal(train=train))
    assert len(errors) == 1
    assert errors[0]["path"] == "train"
    assert "steps" in errors[0]["message"] and "epochs" in errors[0]["message"]


def test_missing_train_is_a_required_field() -> None:
    raw = minimal()
    del raw["train"]
    errors = spec_errors(raw)
    assert paths(errors) == ["train"]
    assert "required" in errors[0]["message"]


def test_unknown_regularizer_is_rejected_with_its_index() -> None:
    errors = spec_errors(minimal(regularizers=[{"name": "l2"}, {"name": "no_such_thing"}]))
    assert len(errors) == 1
    assert errors[0]["path"].startswith("regularizers[1]")
    assert "valid names" in errors[0]["message"]


def test_regularizers_resolve_with_their_defaults() -> None:
    resolved = resolve(parse_spec(minimal(regularizers=[{"name": "l2"}])))
    assert resolved["regularizers"] == [{"name": "l2", "strength": 1e-4, "include_biases": False}]


def test_empty_regularizers_are_accepted() -> None:
    assert parse_spec(minimal(regularizers=[])).regularizers == []


@pytest.mark.parametrize("raw", [None, [], ["data"], "data: {}", 3])
def test_non_mapping_spec_is_rejected(raw: Any) -> None:
    errors = spec_errors(raw)
    assert len(errors) == 1
    assert errors[0]["path"] == "(spec)"
    assert "mapping" in errors[0]["message"]


def test_sgd_nesterov_without_momentum_is_rejected() -> None:
    errors = spec_errors(minimal(optimizer={"name": "sgd", "nesterov": True}))
    assert len(errors) == 1
    assert errors[0]["path"] == "optimizer"
    assert "nesterov" in errors[0]["message"]


def test_several_errors_are_reported_at_once() -> None:
    raw = minimal(
        model={"name": "mlp", "foo": 1},
        optimizer={"name": "adamw", "lr": 0},
        resources={"gpus": 3},
    )
    del raw["train"]
    errors = spec_errors(raw)
    assert set(paths(errors)) == {"model.foo", "optimizer.lr", "resources.gpus", "train"}


# --- every model forbids extras ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("data", {"name": "digits"}),
        ("model", {"name": "mlp"}),
        ("init", {"name": "default"}),
        ("optimizer", {"name": "adamw"}),
        ("schedule", {"name": "cosine"}),
        ("loss", {"name": "cross_entropy"}),
        ("train", {"steps": 10}),
        ("resources", {}),
    ],
)
def test_every_top_level_model_forbids_extra_fields(field: str, value: dict[str, Any]) -> None:
    assert parse_spec(minimal(**{field: value}))  # valid without the extra field
    errors = spec_errors(minimal(**{field: {**value, "extra_thing": 1}}))
    assert paths(errors) == [f"{field}.extra_thing"]


# --- spec_hash --------------------------------------------------------------------------------


def _reverse_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reverse_keys(v) for v in value]
    return value


def test_spec_hash_is_stable_under_key_reordering() -> None:
    raw = minimal(schedule={"name": "cosine", "warmup_steps": 5, "min_lr_ratio": 0.1})
    resolved = resolve(parse_spec(raw))
    reordered = _reverse_keys(resolved)
    assert list(reordered) != list(resolved)  # the order really differs
    assert spec_hash(reordered) == spec_hash(resolved)
    # Also when the raw spec is written in another order.
    assert spec_hash(resolve(parse_spec(_reverse_keys(raw)))) == spec_hash(resolved)


def test_spec_hash_of_defaults_spelled_out_equals_omitted() -> None:
    short = resolve(parse_spec(minimal()))
    spelled = minimal(init={"name": "default"}, schedule={"name": "constant", "warmup_steps": 0})
    assert spec_hash(resolve(parse_spec(spelled))) == spec_hash(short)


@pytest.mark.parametrize(
    "changes",
    [
        {"optimizer": {"name": "adamw", "lr": 2e-3}},
        {"seed": 1},
        {"train": {"steps": 11}},
        {"optimizer": {"name": "adam"}},
        {"name": "another"},
    ],
)
def test_spec_hash_changes_when_a_value_changes(changes: dict[str, Any]) -> None:
    base = spec_hash(resolve(parse_spec(minimal())))
    changed = spec_hash(resolve(parse_spec(minimal(**changes))))
    assert changed != base


def test_spec_hash_is_a_sha256_hex_digest() -> None:
    digest = spec_hash(resolve(parse_spec(minimal())))
    assert len(digest) == 64
    int(digest, 16)
