"""Paths into a job spec (`optimizer.lr`, `regularizers[0].strength`) and values typed as YAML.

Shared by `regimen submit --set`, `regimen sweep --grid/--random` and the sweep service, so a path
means the same thing on both sides of the API. Pure functions over plain dicts and lists.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_\-]*)((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-3` (no dot) as a string; users mean a number, as in YAML 1.2."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)

Key = str | int


class PathError(ValueError):
    """A malformed path, or one that does not lead anywhere in the spec."""


def parse_path(path: str) -> list[Key]:
    """`regularizers[0].strength` -> ['regularizers', 0, 'strength']."""
    if not path:
        raise PathError("empty path")
    keys: list[Key] = []
    for segment in path.split("."):
        match = _SEGMENT.fullmatch(segment)
        if match is None:
            raise PathError(
                f"malformed path {path!r}: use dotted names with [index] for list items, "
                "e.g. regularizers[0].strength"
            )
        keys.append(match.group(1))
        keys.extend(int(i) for i in _INDEX.findall(match.group(2)))
    return keys


def set_path(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `doc` with `value` at `path`; missing mapping keys are created, list items not."""
    result = copy.deepcopy(doc)
    keys = parse_path(path)
    node: Any = result
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        where = _render(keys[:i]) or "the spec"
        if isinstance(key, int):
            if not isinstance(node, list):
                raise PathError(f"{path}: {where} is not a list")
            if key >= len(node):
                raise PathError(f"{path}: {where} has {len(node)} item(s), no index {key}")
        elif not isinstance(node, dict):
            raise PathError(f"{path}: {where} is not a mapping")
        if last:
            node[key] = value
        else:
            if isinstance(node, dict) and key not in node:
                node[key] = [] if isinstance(keys[i + 1], int) else {}
            node = node[key]
    return result


def _render(keys: list[Key]) -> str:
    text = ""
    for key in keys:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else key)
    return text


def parse_value(text: str) -> Any:
    """A YAML scalar (or flow list/map): `1e-3` -> 0.001, `true` -> True, `[16, 16]` -> list."""
    try:
        return yaml.load(text, Loader=_Loader) if text.strip() else ""
    except yaml.YAMLError:
        return text  # not YAML: keep the text as a string value


def parse_assignment(text: str) -> tuple[str, Any]:
    """`optimizer.lr=1e-3` -> ('optimizer.lr', 0.001); the path is checked."""
    path, sep, value = text.partition("=")
    if not sep:
        raise PathError(f"{text!r}: expected PATH=VALUE, e.g. optimizer.lr=1e-3")
    path = path.strip()
    parse_path(path)
    return path, parse_value(value)


def parse_values(text: str) -> list[Any]:
    """Comma-separated values as one YAML flow list: `1e-3,1e-2` or `[16],[32, 32]`."""
    try:
        values = yaml.load(f"[{text}]", Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise PathError(f"cannot read the values {text!r}: {exc}") from None
    if not isinstance(values, list) or not values:
        raise PathError(f"no values in {text!r}")
    return values


def apply_overrides(doc: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for path, value in overrides.items():
        doc = set_path(doc, path, value)
    return doc
