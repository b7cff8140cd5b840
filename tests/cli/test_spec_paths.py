"""`--set PATH=VALUE` parsing: paths into the spec and values typed as YAML scalars."""

from __future__ import annotations

import pytest

from client.spec_paths import (
    PathError,
    apply_overrides,
    parse_assignment,
    parse_path,
    parse_value,
    parse_values,
    set_path,
)

BASE = {
    "name": "base",
    "optimizer": {"name": "adamw", "lr": 1e-3},
    "regularizers": [{"name": "mixup", "alpha": 0.2}, {"name": "ema"}],
}


def test_paths_split_into_keys_and_list_indices() -> None:
    assert parse_path("optimizer.lr") == ["optimizer", "lr"]
    assert parse_path("regularizers[1].strength") == ["regularizers", 1, "strength"]
    assert parse_path("a[0][2].b") == ["a", 0, 2, "b"]


@pytest.mark.parametrize("bad", ["", "a..b", "a.", ".a", "a[x]", "a[-1]", "a b", "1a"])
def test_malformed_paths_are_rejected(bad: str) -> None:
    with pytest.raises(PathError):
        parse_path(bad)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e-3", 0.001),  # YAML 1.1 alone would keep this a string
        ("-2.5E+2", -250.0),
        ("3", 3),
        ("0.9", 0.9),
        ("true", True),
        ("null", None),
        ("adamw", "adamw"),
        ("[16, 32]", [16, 32]),
        ("{name: ema, decay: 1e-2}", {"name": "ema", "decay": 0.01}),
        ("'1e-3'", "1e-3"),  # quoted: the user asked for a string
    ],
)
def test_values_are_yaml_scalars_with_numbers_as_users_mean_them(text: str, value: object) -> None:
    parsed = parse_value(text)
    assert parsed == value
    assert type(parsed) is type(value)


def test_an_assignment_sets_a_nested_value_and_leaves_the_input_alone() -> None:
    path, value = parse_assignment("regularizers[0].alpha=0.4")
    changed = set_path(BASE, path, value)
    assert changed["regularizers"][0] == {"name": "mixup", "alpha": 0.4}
    assert BASE["regularizers"][0]["alpha"] == 0.2
    assert changed["optimizer"] is not BASE["optimizer"]


def test_missing_mapping_keys_are_created_but_list_items_are_not() -> None:
    assert set_path(BASE, "train.steps", 10)["train"] == {"steps": 10}
    assert set_path(BASE, "optimizer.clip.norm", 1.0)["optimizer"]["clip"] == {"norm": 1.0}
    with pytest.raises(PathError, match="has 2 item"):
        set_path(BASE, "regularizers[2].alpha", 1.0)
    with pytest.raises(PathError, match="not a list"):
        set_path(BASE, "optimizer[0]", 1.0)
    with pytest.raises(PathError, match="not a mapping"):
        set_path(BASE, "optimizer.lr.value", 1.0)


def test_assignments_without_equals_are_rejected() -> None:
    with pytest.raises(PathError, match="PATH=VALUE"):
        parse_assignment("optimizer.lr")


def test_a_value_may_itself_contain_equals() -> None:
    assert parse_assignment("name=a=b") == ("name", "a=b")


def test_overrides_apply_in_order() -> None:
    doc = apply_overrides(BASE, {"optimizer": {"name": "sgd"}, "optimizer.lr": 0.1})
    assert doc["optimizer"] == {"name": "sgd", "lr": 0.1}


def test_comma_separated_values_parse_as_one_flow_list() -> None:
    assert parse_values("1e-3,1e-2") == [0.001, 0.01]
    assert parse_values("[16],[32, 32]") == [[16], [32, 32]]
    assert parse_values("sgd, adamw") == ["sgd", "adamw"]
    with pytest.raises(PathError):
        parse_values("")
