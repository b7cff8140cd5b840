"""The job spec: what a user submits, validated before anything is stored or run.

Every component field is a union of the registered settings models, discriminated by `name`, so
an unknown name is rejected with the list of valid ones, and unknown fields are errors.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

import trainlib.components  # noqa: F401  (registers the built-in components)
from trainlib.components.schedules_runtime import BatchScaling
from trainlib.compression import BitNetSettings, PruningSettings
from trainlib.data import Task
from trainlib.registries import (
    DATASETS,
    INITS,
    LOSSES,
    MODELS,
    OPTIMIZERS,
    REGULARIZERS,
    SCHEDULES,
)
from trainlib.registry import ComponentSettings, Registry
from trainlib.regularizers.base import task_mismatch


def _union_of(registry: Registry) -> Any:
    models = tuple(entry.settings for entry in registry.entries())
    if not models:
        return dict[str, Any]  # nothing registered yet: rejected by a validator below
    return Annotated[Union[models], Field(discriminator="name")]  # noqa: UP007


if TYPE_CHECKING:  # the unions are built at import time from whatever is registered
    OptimizerSpec: TypeAlias = ComponentSettings
    ScheduleSpec: TypeAlias = ComponentSettings
    LossSpec: TypeAlias = ComponentSettings
    RegularizerSpec: TypeAlias = ComponentSettings
    ModelSpec: TypeAlias = ComponentSettings
    InitSpec: TypeAlias = ComponentSettings
    DataSpec: TypeAlias = ComponentSettings
else:
    OptimizerSpec = _union_of(OPTIMIZERS)
    ScheduleSpec = _union_of(SCHEDULES)
    LossSpec = _union_of(LOSSES)
    RegularizerSpec = _union_of(REGULARIZERS)
    ModelSpec = _union_of(MODELS)
    InitSpec = _union_of(INITS)
    DataSpec = _union_of(DATASETS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainSettings(_Strict):
    steps: int | None = Field(None, ge=1, le=10_000_000, description="optimizer steps")
    epochs: int | None = Field(None, ge=1, le=100_000, description="or: passes over the data")
    eval_every: int = Field(100, ge=1, description="validate every N steps (and at the end)")
    log_every: int = Field(10, ge=1, description="report training metrics every N steps")
    checkpoint_every: int | None = Field(
        None, ge=1, description="write a checkpoint every N steps (always one at the end)"
    )
    keep_checkpoints: int = Field(
        3, ge=1, le=1000, description="full-state checkpoints kept: the last N and the best"
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="bf16: autocast; fp16: autocast with a gradient scaler"
    )
    quantization: BitNetSettings | None = Field(
        None, description="quantization-aware training, e.g. {name: bitnet158}"
    )
    pruning: PruningSettings | None = Field(
        None, description="{name: magnitude} (gradual) or {name: n_m, n: 2, m: 4}"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    scale_lr_with_batch: BatchScaling | None = Field(
        None, description="{rule: linear|sqrt, base_batch_size: 256}: lr x B/B0 or sqrt(B/B0)"
    )

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> TrainSettings:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of train.steps or train.epochs")
        return self


class Resources(_Strict):
    gpus: Literal[0, 1, 2, 4, 8] = Field(0, description="GPUs on one worker")
    priority: Literal["low", "normal", "high"] = Field(
        "normal", description="queue priority; high only with a key allowed it"
    )
    max_runtime_s: int = Field(24 * 3600, ge=1, le=30 * 24 * 3600)
    max_attempts: int = Field(3, ge=1, le=10)
    max_queue_s: int = Field(
        7 * 24 * 3600, ge=1, le=30 * 24 * 3600, description="fail as timeout if unclaimed longer"
    )


class JobSpec(_Strict):
    """A training job: model, data, optimizer, schedule, loss and regularizers, by name."""

    name: str = Field("job", min_length=1, max_length=200)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    data: DataSpec
    model: ModelSpec
    init: InitSpec = Field(default_factory=lambda: INITS.settings_for({"name": "default"}))
    optimizer: OptimizerSpec
    schedule: ScheduleSpec = Field(
        default_factory=lambda: SCHEDULES.settings_for({"name": "constant"})
    )
    loss: LossSpec = Field(default_factory=lambda: LOSSES.settings_for({"name": "cross_entropy"}))
    regularizers: list[RegularizerSpec] = Field(default_factory=list)
    train: TrainSettings
    resources: Resources = Field(default_factory=Resources)

    @model_validator(mode="before")
    @classmethod
    def _grad_clip_alias(cls, data: Any) -> Any:
        """`train.grad_clip_norm` is shorthand for `optimizer.clip.norm` (a wrapper's base)."""
        if not (isinstance(data, dict) and isinstance(data.get("train"), dict)):
            return data
        if "grad_clip_norm" not in data["train"]:
            return data
        data = dict(data)
        train = dict(data["train"])
        value = train.pop("grad_clip_norm")
        data["train"] = train
        if value is None or not isinstance(data.get("optimizer"), dict):
            return data
        optimizer = dict(data["optimizer"])
        target = optimizer
        if isinstance(optimizer.get("base"), dict):
            target = optimizer["base"] = dict(optimizer["base"])
        clip = dict(target.get("clip") or {})
        if clip.get("norm") not in (None, value):
            raise ValueError("set train.grad_clip_norm or optimizer.clip.norm, not both")
        clip["norm"] = value
        target["clip"] = clip
        data["optimizer"] = optimizer
        return data

    @model_validator(mode="after")
    def _compatible_components(self) -> JobSpec:
        """Combinations that cannot work are rejected here, with the reason."""
        strategies = [r.name for r in self.regularizers if getattr(r, "step_strategy", False)]
        if getattr(self.optimizer, "base", None) is not None:
            strategies.insert(0, f"optimizer {self.optimizer.name}")
        if len(strategies) > 1:
            raise ValueError(
                f"{' and '.join(strategies)} are both step strategies (each owns the forward and "
                "backward passes); keep one"
            )
        if strategies and self.train.precision == "fp16":
            raise ValueError(
                f"fp16 loss scaling needs the plain step, not {strategies[0]}; use bf16"
            )
        known: Callable[[], Task | None] | None = getattr(self.data, "known_task", None)
        task = known() if known is not None else None
        for reg in self.regularizers:
            if task is not None and (why := task_mismatch(reg, task)) is not None:
                raise ValueError(why)
        soft = [r.name for r in self.regularizers if getattr(r, "soft_targets", False)]
        if soft and not getattr(self.loss, "soft_targets", True):
            raise ValueError(
                f"{', '.join(soft)} produce soft targets, which loss {self.loss.name!r} cannot "
                "take; use a loss such as cross_entropy"
            )
        return self


class SpecError(ValueError):
    """A spec that failed validation, with one `(path, message)` per problem."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        lines = "; ".join(f"{e['path']}: {e['message']}" for e in errors)
        super().__init__(f"invalid job spec: {lines}")


_COMPONENT_FIELDS: dict[str, Registry] = {
    "data": DATASETS,
    "model": MODELS,
    "init": INITS,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "loss": LOSSES,
    "regularizers": REGULARIZERS,
}


def _format_path(loc: tuple[int | str, ...], raw: Any) -> str:
    """Dotted field path; drops the union tag pydantic puts in the location."""
    path = ""
    node = raw
    for part in loc:
        if isinstance(node, dict) and node.get("name") == part and part not in node:
            continue  # the discriminator value, not a field
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return path or "(spec)"


def _message(err: Any, raw: Any) -> str:
    loc = err["loc"]
    registry = _COMPONENT_FIELDS.get(str(loc[0])) if loc else None
    unknown_name = err["type"] == "union_tag_invalid" or (
        err["type"] == "literal_error" and loc and loc[-1] == "name" and len(loc) <= 3
    )
    if registry is not None and unknown_name:
        tag = err.get("input")
        if isinstance(tag, dict):
            tag = tag.get("name")
        return f"unknown {registry.kind} {tag!r}; valid names: {', '.join(registry.names())}"
    if registry is not None and err["type"] == "union_tag_not_found":
        return f"missing 'name'; valid names: {', '.join(registry.names())}"
    if err["type"] == "missing":
        return "field required"
    if err["type"] == "extra_forbidden":
        return "unknown field; remove it (check the spelling)"
    return str(err["msg"]).removeprefix("Value error, ")


def parse_spec(raw: Any) -> JobSpec:
    """Validate a raw spec (a dict from JSON or YAML), raising SpecError with field paths."""
    if not isinstance(raw, dict):
        raise SpecError([{"path": "(spec)", "message": "a job spec must be a mapping"}])
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {"path": _format_path(err["loc"], raw), "message": _message(err, raw)}
            for err in exc.errors(include_url=False)
        ]
        raise SpecError(errors) from None


def resolve(spec: JobSpec) -> dict[str, Any]:
    """The spec with every default filled in, as plain JSON values."""
    return spec.model_dump(mode="json")


def spec_hash(resolved: dict[str, Any]) -> str:
    canonical = json.dumps(resolved, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def total_steps(spec: JobSpec, steps_per_epoch: int) -> int:
    if spec.train.steps is not None:
        return spec.train.steps
    assert spec.train.epochs is not None
    return spec.train.epochs * steps_per_epoch
