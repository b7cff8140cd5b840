"""The training loop: builds every component from the registries and trains.

Kept lean: the loss is summed on the device and read only at each log interval (no host-device
synchronisation on every step), and metrics reach the sink in batches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from trainlib.checkpoint import (
    CheckpointError,
    load_state,
    model_weights,
    prune_states,
    save_state,
    save_weights,
    state_path,
)
from trainlib.components.datasets_upload import DatasetResolver, load_data
from trainlib.components.inits_base import InitContext, apply_init
from trainlib.components.schedules_runtime import build_scheduler
from trainlib.compression import apply_bitnet, build_pruner
from trainlib.data import BatchOrder, DataBundle
from trainlib.distributed import Distributed
from trainlib.errors import DataError, Diverged
from trainlib.optim.base import innermost
from trainlib.optim.build import build_optimizer
from trainlib.precision import Precision
from trainlib.registries import LOSSES, MODELS
from trainlib.regularizers.base import SetupContext
from trainlib.regularizers.stack import RegularizerStack
from trainlib.scoring import count_correct, has_accuracy, loss_for_task
from trainlib.sink import Metric, NullSink, Sink
from trainlib.spec import JobSpec, resolve, spec_hash, total_steps
from trainlib.state import load_optimizer_state, rng_state, set_rng_state
from trainlib.step import evaluation_weights, train_step

EVAL_CHUNK = 4096


@dataclass
class TrainResult:
    status: Literal["completed", "stopped"]
    step: int
    total_steps: int
    final_metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None  # weights only (evaluation weights)
    state: Path | None = None  # the full state to resume from


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: nn.Module, data: DataBundle) -> dict[str, float]:
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=data.val_x.device)
    correct = torch.zeros((), device=data.val_x.device, dtype=torch.long)
    n = len(data.val_x)
    for start in range(0, n, EVAL_CHUNK):
        x, y = data.val_x[start : start + EVAL_CHUNK], data.val_y[start : start + EVAL_CHUNK]
        logits = model(x)
        loss_sum += loss_fn(logits, y) * len(x)
        correct += count_correct(logits, y)[0]
    model.train(was_training)
    scores = {"val_loss": loss_sum.item() / n}
    if has_accuracy(data.info):  # a sequence counts every position
        scores["val_accuracy"] = correct.item() / data.val_y.numel()
    return scores


@dataclass
class _Parts:
    """The run's stateful objects; their states plus the RNGs make a full-state checkpoint."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # torch's LRScheduler or a schedule with state_dict/load_state_dict
    regularizers: RegularizerStack
    loss_fn: nn.Module
    precision: Precision
    pruner: Any  # trainlib.compression's Pruner, or None
    order: BatchOrder

    def state_dict(self) -> dict[str, Any]:
        """Taken in training mode: schedule-free's y (and z in its state), not its evaluation x."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "regularizers": self.regularizers.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "precision": self.precision.state_dict(),
            "pruner": self.pruner.state_dict() if self.pruner is not None else {},
            "data_order": self.order.state_dict(),
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.regularizers.load_state_dict(state["regularizers"])
        self.loss_fn.load_state_dict(state["loss"])
        self.precision.load_state_dict(state["precision"])
        if self.pruner is not None:
            self.pruner.load_state_dict(state["pruner"])
        self.order.load_state_dict(state["data_order"])
        set_rng_state(state["rng"])


def _warm_weights(model: nn.Module, path: Path | None) -> dict[str, torch.Tensor] | None:
    """Load `path`'s weights into the bare model now if they fit it; else return them."""
    if path is None:
        return None
    weights = model_weights(path)
    if weights.keys() != model.state_dict().keys():
        return weights
    _load_model(model, weights=weights, path=path)
    return None


def _load_model(model: nn.Module, *, weights: dict[str, torch.Tensor], path: Path | None) -> None:
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"warm start: {path} does not fit this job's model: {exc}") from exc


def train(
    spec: JobSpec,
    sink: Sink | None = None,
    *,
    out_dir: Path | None = None,
    device: torch.device | None = None,
    resolve_job: Callable[[str], tuple[dict[str, Any], Path]] | None = None,
    resolve_dataset: DatasetResolver | None = None,
    resume_from: Path | None = None,
    warm_start: Path | None = None,
    prune_checkpoints: bool = True,
    distributed: Distributed | None = None,
) -> TrainResult:
    """Train `spec` to the end (or until the sink asks to stop); the last checkpoint in out_dir.

    `resolve_job` maps another job's id to its resolved spec and checkpoint (distillation
    teachers); the service provides it, local runs have none. `resume_from` is a full-state
    checkpoint of the same spec: the run continues from its step exactly as if never stopped.
    `warm_start` (a state or weights file of any spec with the same model) only sets the model's
    weights before step 0; optimizer, schedule and regularizers start fresh (a fork with changes).
    Full states go to out_dir every `train.checkpoint_every` steps, at a stop and at the end;
    `prune_checkpoints` keeps only `train.keep_checkpoints` of them there (the service, which
    prunes through its database, turns it off).
    `distributed` (torchrun's processes, trainlib/distributed.py): each process trains its share
    of every global batch through DDP; only rank 0 reports and writes checkpoints.
    """
    dist = distributed or Distributed()
    if not dist.is_main:
        sink, out_dir = NullSink(), None
    sink = sink or NullSink()
    device = dist.device(device or pick_device(spec.train.device))
    torch.manual_seed(spec.seed)

    data: DataBundle = load_data(spec.data, spec.seed, resolve_dataset).to(device)
    model: nn.Module = MODELS.build(spec.model, data.info)
    init = apply_init(spec.init, model, InitContext.from_data(data, resolve_job))
    if spec.train.quantization is not None:
        apply_bitnet(model, spec.train.quantization)
    model.to(device).train()
    n_steps = total_steps(spec, data.steps_per_epoch)
    if data.tasks is not None and n_steps > data.tasks.total_steps:
        raise DataError(
            f"the task sequence has {data.tasks.n_tasks} tasks of {data.tasks.steps_per_task} "
            f"steps ({data.tasks.total_steps} in all); the job asks for {n_steps} steps"
        )
    setup = SetupContext(
        info=data.info,
        total_steps=n_steps,
        steps_per_epoch=data.steps_per_epoch,
        batch_size=data.batch_size,
        train_size=len(data.train_x),
        seed=spec.seed,
        resolve_job=resolve_job,
    )
    regularizers = RegularizerStack.build(spec.regularizers, setup)
    # weights before configure_model, so EMA copies and θ₀ anchors start from them; a model
    # saved with its reparametrizations (weight_norm, ...) is loaded once they are in place,
    # still before the averaging copies are taken
    warm = _warm_weights(model, warm_start)
    regularizers.configure_model(
        model, partial(_load_model, weights=warm, path=warm_start) if warm is not None else None
    )
    optimizer = build_optimizer(
        spec.optimizer, model, adjust_groups=init.after(regularizers.param_groups)
    )
    net = dist.wrap(model)  # forward passes go through DDP; state and evaluation use the model
    scheduler = build_scheduler(
        spec.schedule,
        innermost(optimizer),
        n_steps,
        spec.train.scale_lr_with_batch,
        data.batch_size,
    )
    loss_fn: nn.Module = loss_for_task(LOSSES.build(spec.loss), data.info)
    order = BatchOrder(len(data.train_x), data.batch_size, seed=spec.seed + 1)
    batches = order.batches(data)
    precision = Precision(spec.train.precision, device)  # its scaler's state is checkpointed
    pruning = spec.train.pruning
    pruner = build_pruner(pruning, model, n_steps) if pruning is not None else None
    step_fn = (
        regularizers.strategy.train_step
        if regularizers.strategy
        else partial(train_step, scaler=precision.scaler)
    )
    digest = spec_hash(resolve(spec))
    cfg = spec.train

    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    since_log = 0
    last: dict[str, float] = {}
    step = 0
    task = 0  # a task sequence's current task: `data` holds its tensors
    parts = _Parts(model, optimizer, scheduler, regularizers, loss_fn, precision, pruner, order)
    # BN refreshes and weight saves are not training: their dropout draws must not move its RNG
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    if resume_from is not None:
        step, state = load_state(resume_from, spec_hash=digest)
        parts.load_state_dict(state)
        tally = state["log"]
        loss_sum.copy_(tally["loss_sum"])
        correct.copy_(tally["correct"])
        seen, since_log = tally["seen"], tally["since_log"]
        sums = {k: v.to(device) for k, v in tally["penalties"]["sums"].items()}  # CPU on load
        regularizers.load_log_state({**tally["penalties"], "sums": sums})
        last.update(tally["last"])
    saved: tuple[int, Path | None, Path | None] = (-1, None, None)  # step, weights, full state

    def train_inputs() -> Iterator[torch.Tensor]:
        for i in range(0, len(data.train_x), data.batch_size):
            yield data.train_x[i : i + data.batch_size]

    def refresh_averaged() -> None:
        with torch.random.fork_rng(devices=rng_devices):
            regularizers.refresh_batchnorm(train_inputs)

    def save_full_state(at_step: int) -> Path:
        assert out_dir is not None
        state = parts.state_dict()
        state["log"] = {
            "loss_sum": loss_sum,
            "correct": correct,
            "seen": seen,
            "since_log": since_log,
            "penalties": regularizers.log_state(),
            "last": dict(last),
        }
        path = state_path(out_dir, at_step)
        save_state(path, state, step=at_step, spec_hash=digest, val_loss=last.get("val_loss"))
        sink.on_checkpoint(at_step, path)
        if prune_checkpoints:
            prune_states(out_dir, cfg.keep_checkpoints)
        return path

    def save(at_step: int) -> tuple[Path | None, Path | None]:
        """Weights-only files (evaluation weights, averaged models), then the full state."""
        nonlocal saved
        if out_dir is None:
            return None, None
        if saved[0] == at_step:  # a stop right after a periodic checkpoint: already written
            return saved[1], saved[2]
        refresh_averaged()
        meta = {"step": str(at_step), "spec_hash": digest}
        with evaluation_weights(optimizer):
            path = save_weights(out_dir / "checkpoint.safetensors", model.state_dict(), meta)
        for label, averaged in regularizers.evaluation_models().items():
            name = f"checkpoint-{label.replace('#', '-')}.safetensors"
            save_weights(out_dir / name, averaged.state_dict(), meta)
        saved = (at_step, path, save_full_state(at_step))
        return saved[1], saved[2]

    while step < n_steps:
        if dist.any(sink.should_stop(), device):  # every process stops at the same step
            return TrainResult("stopped", step, n_steps, last, *save(step))
        if data.tasks is not None and data.tasks.task_at(step) != task:
            task = data.tasks.task_at(step)  # follows from the step, so a resume lands right
            data = data.for_task(task)
            batches = order.batches(data)
        x, y, indices = (dist.shard(t) for t in next(batches))
        labels = y
        if regularizers:
            x, y = regularizers.transform_batch(x, y, indices, step)
            compute_loss = regularizers.loss_closure(loss_fn, net, x, indices, step)
        else:
            compute_loss = loss_fn
        with precision.autocast():
            loss, logits = step_fn(net, optimizer, x, y, compute_loss)
        regularizers.after_step(model, optimizer, step)
        if pruner is not None:
            pruner.after_step(step + 1)
        lr_used = float(optimizer.param_groups[0]["lr"])
        scheduler.step()
        step += 1
        loss_sum += loss.detach()
        if has_accuracy(data.info):
            right, counted = count_correct(logits.detach(), labels)
            correct += right
            seen += counted
        since_log += 1

        points: dict[str, float] = {}
        if step % cfg.log_every == 0 or step == n_steps:
            if dist.enabled:  # the global batch's figures: shard means averaged, counts summed
                loss_sum.copy_(dist.sum(loss_sum) / dist.world_size)
                tally = dist.sum(torch.stack([correct, torch.tensor(seen, device=device)]))
                correct.copy_(tally[0])
                seen = int(tally[1].item())
            mean_loss = loss_sum.item() / since_log
            if not math.isfinite(mean_loss):
                raise Diverged(step, mean_loss)
            points.update(loss=mean_loss, lr=lr_used)
            if seen:
                points["accuracy"] = correct.item() / seen
            points.update(regularizers.metrics())
            if pruner is not None:
                points["sparsity"] = pruner.sparsity()
            loss_sum.zero_()
            correct.zero_()
            seen = since_log = 0
        if step % cfg.eval_every == 0 or step == n_steps:
            with evaluation_weights(optimizer), precision.autocast():
                points.update(evaluate(model, loss_fn, data))
            refresh_averaged()
            for label, averaged in regularizers.evaluation_models().items():
                scores = evaluate(averaged, loss_fn, data)
                points.update({f"{label}/{k}": v for k, v in scores.items()})
        if data.tasks is not None and (data.tasks.ends_task(step) or step == n_steps):
            with evaluation_weights(optimizer), precision.autocast():
                scores = evaluate(model, loss_fn, data)  # this task's validation set
            points.update(task=task, task_loss=scores["val_loss"])
            points["task_accuracy"] = scores["val_accuracy"]
        if points:
            now = time.time()
            sink.on_metrics([Metric(step, k, float(v), now) for k, v in points.items()])
            sink.on_progress(step, n_steps)
            last.update(points)
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < n_steps:
            if since_log and not torch.isfinite(loss_sum):  # never checkpoint diverged weights
                raise Diverged(step, loss_sum.item())
            save(step)

    return TrainResult("completed", step, n_steps, last, *save(step))
