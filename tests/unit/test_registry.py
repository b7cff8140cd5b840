"""The Registry type on a fresh instance, and the published catalog of the real registries."""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest
from pydantic import BaseModel, Field, ValidationError

from trainlib.catalog import catalog
from trainlib.registries import ALL
from trainlib.registry import ComponentSettings, Registry


class WidgetSettings(BaseModel):
    """A widget of some size."""

    size: int = Field(3, ge=1, le=10, description="how big")
    color: str = "red"


class GadgetSettings(BaseModel):
    depth: float = 1.0


def make_registry() -> Registry:
    registry = Registry("thing")

    @registry.register(
        "widget", settings=WidgetSettings, summary="a widget", paper="Widgets (Doe, 2020)"
    )
    def build_widget(s: Any, factor: int = 1) -> tuple[str, int, int]:
        return (s.name, s.size * factor, factor)

    @registry.register("gadget", settings=GadgetSettings, summary="a gadget")
    def build_gadget(s: Any) -> float:
        return float(s.depth)

    return registry


def test_registered_entries_are_listed_sorted_and_contained() -> None:
    registry = make_registry()
    assert registry.names() == ["gadget", "widget"]
    assert len(registry) == 2
    assert "widget" in registry
    assert "nope" not in registry
    assert [e.name for e in registry.entries()] == ["gadget", "widget"]
    assert all(e.kind == "thing" for e in registry.entries())


def test_duplicate_name_raises_value_error() -> None:
    registry = make_registry()
    with pytest.raises(ValueError, match="widget"):
        registry.register("widget", settings=GadgetSettings, summary="again")
    # The original entry is untouched.
    assert registry.get("widget").summary == "a widget"


def test_same_name_in_another_registry_is_fine() -> None:
    make_registry()
    other = make_registry()  # independent instances do not share entries
    assert other.names() == ["gadget", "widget"]


def test_unknown_name_raises_key_error_listing_valid_names() -> None:
    registry = make_registry()
    with pytest.raises(KeyError) as info:
        registry.get("sprocket")
    message = str(info.value)
    assert "sprocket" in message
    assert "thing" in message
    assert "gadget" in message and "widget" in message


def test_unknown_name_in_an_empty_registry_still_explains() -> None:
    with pytest.raises(KeyError, match="sprocket"):
        Registry("empty").get("sprocket")


def test_build_validates_and_calls_the_builder() -> None:
    registry = make_registry()
    assert registry.build({"name": "widget", "size": 4}, factor=3) == ("widget", 12, 3)
    assert registry.build({"name": "gadget"}) == 1.0


def test_build_rejects_a_config_without_name() -> None:
    registry = make_registry()
    with pytest.raises(ValueError, match="name"):
        registry.build({"size": 4})


def test_tagged_settings_name_is_a_literal() -> None:
    registry = make_registry()
    tagged = registry.get("widget").settings
    assert issubclass(tagged, ComponentSettings)
    assert issubclass(tagged, WidgetSettings)
    annotation = tagged.model_fields["name"].annotation
    assert typing.get_origin(annotation) is typing.Literal
    assert typing.get_args(annotation) == ("widget",)

    assert tagged.model_validate({"name": "widget", "size": 2}).size == 2
    with pytest.raises(ValidationError):
        tagged.model_validate({"name": "gadget", "size": 2})


def test_tagged_settings_validate_ranges_and_forbid_extras() -> None:
    # WidgetSettings itself allows extras; the registry's tagged model must not.
    registry = make_registry()
    tagged = registry.get("widget").settings
    with pytest.raises(ValidationError):
        tagged.model_validate({"name": "widget", "size": 0})
    with pytest.raises(ValidationError):
        tagged.model_validate({"name": "widget", "colour": "blue"})


def test_tagged_settings_are_frozen() -> None:
    settings = make_registry().settings_for({"name": "widget"})
    with pytest.raises(ValidationError):
        settings.size = 5


def test_settings_for_passes_validated_settings_through() -> None:
    registry = make_registry()
    settings = registry.settings_for({"name": "widget", "size": 5})
    assert registry.settings_for(settings) is settings


def test_describe_includes_name_summary_paper_and_schema() -> None:
    registry = make_registry()
    widget = registry.get("widget").describe()
    assert widget["kind"] == "thing"
    assert widget["name"] == "widget"
    assert widget["summary"] == "a widget"
    assert widget["paper"] == "Widgets (Doe, 2020)"
    schema = widget["schema"]
    assert {"name", "size", "color"} <= set(schema["properties"])
    assert schema["properties"]["size"]["minimum"] == 1
    assert schema["properties"]["size"]["maximum"] == 10
    assert "widget" in json.dumps(schema["properties"]["name"])
    json.dumps(widget)  # serialisable

    gadget = registry.get("gadget").describe()
    assert gadget["paper"] is None
    assert "depth" in gadget["schema"]["properties"]


# --- the real registries ----------------------------------------------------------------------


def test_catalog_covers_every_kind() -> None:
    cat = catalog()
    assert set(cat) == set(ALL)
    for kind, registry in ALL.items():
        assert [e["name"] for e in cat[kind]] == registry.names()
        for entry in cat[kind]:
            assert entry["kind"] == kind
            assert entry["summary"]


def test_catalog_is_json_serialisable_with_object_schemas() -> None:
    cat = catalog()
    text = json.dumps(cat)
    assert json.loads(text) == cat
    for entries in cat.values():
        for entry in entries:
            schema = entry["schema"]
            assert schema["type"] == "object"
            assert "name" in schema["properties"]
            json.dumps(schema)


def test_builtin_kinds_have_entries() -> None:
    for kind in ("optimizer", "schedule", "loss", "model", "init", "dataset"):
        assert len(ALL[kind]) >= 1, kind
    assert {"sgd", "adam", "adamw"} <= set(ALL["optimizer"].names())
