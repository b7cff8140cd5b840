"""One registry type for every kind of component (optimizer, schedule, loss, model, ...).

An entry is a name, a pydantic settings model, a builder, a one-line summary and the paper it
comes from. Specs name components only through a registry: never an import path, pickle or eval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, create_model

B = TypeVar("B", bound=Callable[..., Any])


class ComponentSettings(BaseModel):
    """Base of every component's settings: unknown fields are an error, never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    settings: type[ComponentSettings]
    builder: Callable[..., Any]
    summary: str
    paper: str | None

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "summary": self.summary,
            "paper": self.paper,
            "schema": self.settings.model_json_schema(),
        }
        tasks = getattr(self.settings, "tasks", None)  # a regularizer's: the data it trains on
        if tasks is not None:
            described["tasks"] = sorted(tasks)
        return described


class Registry:
    """Name -> component. `register` is a decorator on the builder."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(
        self,
        name: str,
        *,
        settings: type[BaseModel],
        summary: str,
        paper: str | None = None,
    ) -> Callable[[B], B]:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        # The settings model gains `name: Literal[name]` so specs validate as a discriminated union.
        fields: dict[str, Any] = {"name": (Literal[name], ...)}
        bases: tuple[type[Any], ...] = (settings, ComponentSettings)
        model_name = f"{_camel(name)}{_camel(self.kind)}Settings"
        tagged = cast("type[ComponentSettings]", create_model(model_name, __base__=bases, **fields))
        tagged.__doc__ = settings.__doc__

        def decorator(builder: B) -> B:
            self._entries[name] = Entry(self.kind, name, tagged, builder, summary, paper)
            return builder

        return decorator

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(self.names()) or "(none registered)"
            raise KeyError(f"unknown {self.kind} {name!r}; valid names: {valid}") from None

    def settings_for(self, config: BaseModel | dict[str, Any]) -> ComponentSettings:
        """Validate a raw dict (or pass through an already validated settings object)."""
        if isinstance(config, ComponentSettings):
            return config
        raw = config.model_dump() if isinstance(config, BaseModel) else dict(config)
        if "name" not in raw:
            raise ValueError(f"{self.kind} needs a 'name'; valid names: {', '.join(self.names())}")
        return self.get(str(raw["name"])).settings.model_validate(raw)

    def build(self, config: BaseModel | dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        settings = self.settings_for(config)
        return self.get(settings.name).builder(settings, *args, **kwargs)


def _camel(text: str) -> str:
    return "".join(part.capitalize() for part in text.replace("-", "_").split("_"))
