"""The normalization registry's public face: `make_norm` and the `NormField` models use.

A norm in model settings is either a bare name ("layernorm") or a dict with the name and that
norm's settings ({"name": "ghost_batchnorm", "virtual_batch_size": 32}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, TypeAlias, Union

from pydantic import BaseModel, BeforeValidator, Field
from torch import nn

from trainlib.components import norms_batch, norms_feature, norms_running  # noqa: F401 (register)
from trainlib.components.norms_layout import Layout
from trainlib.registries import NORMS
from trainlib.registry import ComponentSettings


def _name_to_dict(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


def _norm_union() -> Any:
    settings = tuple(entry.settings for entry in NORMS.entries())
    return Annotated[Union[settings], Field(discriminator="name")]  # noqa: UP007


if TYPE_CHECKING:  # the union is built at import time from the registered norms
    NormSettings: TypeAlias = ComponentSettings
    NormField: TypeAlias = ComponentSettings
else:
    NormSettings = _norm_union()
    # A model setting naming a norm: a bare name or {"name": ..., settings...}.
    NormField = Annotated[NormSettings, BeforeValidator(_name_to_dict)]


def norm_field(default: str = "none") -> Any:
    """A `NormField` default that is validated, so it dumps like a value given in a spec."""
    return Field(default, validate_default=True)


def make_norm(
    settings_or_name: str | BaseModel | dict[str, Any], num_features: int, layout: Layout
) -> nn.Module:
    """Build a norm for `num_features` features ("features": (..., C)) or channels (N, C, H, W)."""
    config = _name_to_dict(settings_or_name)
    module: nn.Module = NORMS.build(config, num_features, layout)
    return module


def norm_name(settings_or_name: str | BaseModel | dict[str, Any]) -> str:
    config = _name_to_dict(settings_or_name)
    return str(config["name"] if isinstance(config, dict) else config.name)
