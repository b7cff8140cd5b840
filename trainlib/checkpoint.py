"""Checkpoints in safetensors (never pickle), written under a temporary name and renamed.

Two kinds: weights-only files (`checkpoint.safetensors`: the evaluation weights that teachers
and downloads read) and full-state files (`state-00000100.safetensors`: everything a run needs to
continue bit-identically, flattened by `trainlib.state` into tensors plus a JSON skeleton kept in
the metadata, stamped with the step and the spec hash so that another spec cannot resume it).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from trainlib.errors import TrainingError
from trainlib.state import flatten, unflatten

STATE_FORMAT = "regimen-state/1"
_STATE_NAME = re.compile(r"^state-(\d+)\.safetensors$")


class CheckpointError(TrainingError):
    """A full-state checkpoint that this job cannot resume (another spec, not a state file)."""


def save_weights(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # safetensors refuses shared or non-contiguous storage: store independent copies.
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    try:
        save_file(plain, str(tmp), metadata=metadata)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new, never half
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)  # and the rename itself survives a crash
    return path


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


# --- full state -------------------------------------------------------------------------------


def state_path(out_dir: Path, step: int) -> Path:
    return out_dir / f"state-{step:08d}.safetensors"


@dataclass(frozen=True)
class StateInfo:
    """What a full-state file's metadata says, read without loading its tensors."""

    path: Path
    step: int
    spec_hash: str
    val_loss: float | None


def save_state(
    path: Path,
    state: dict[str, Any],
    *,
    step: int,
    spec_hash: str,
    val_loss: float | None = None,
) -> Path:
    """Write a full training state atomically; `val_loss` (latest evaluation) ranks for pruning."""
    tensors, skeleton = flatten(state)
    meta = {"format": STATE_FORMAT, "step": str(step), "spec_hash": spec_hash}
    meta["skeleton"] = skeleton
    if val_loss is not None and math.isfinite(val_loss):
        meta["val_loss"] = repr(val_loss)
    return save_weights(path, tensors, meta)


def read_state_info(path: Path) -> StateInfo:
    """The step, spec hash and val_loss of a full-state file; CheckpointError if it is not one."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except (OSError, SafetensorError) as exc:
        raise _unreadable(path, exc) from exc
    if meta.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not a full-state checkpoint (format {STATE_FORMAT})")
    val = meta.get("val_loss")
    return StateInfo(path, int(meta["step"]), meta["spec_hash"], float(val) if val else None)


def load_state(path: Path, *, spec_hash: str | None) -> tuple[int, dict[str, Any]]:
    """(step, nested state) of a full-state file written for the spec with this hash.

    `spec_hash=None` reads any spec's state (warm starts take its model weights only).
    """
    info = read_state_info(path)
    if spec_hash is not None and info.spec_hash != spec_hash:
        raise CheckpointError(
            f"{path.name} was written for spec {info.spec_hash[:12]}, this job's spec is "
            f"{spec_hash[:12]}: a checkpoint resumes only the spec that wrote it"
        )
    try:
        with safe_open(str(path), framework="pt") as fh:
            skeleton = (fh.metadata() or {})["skeleton"]
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118 (not a dict)
    except (OSError, SafetensorError) as exc:
        raise _unreadable(path, exc) from exc
    return info.step, unflatten(tensors, skeleton)


def model_weights(path: Path) -> dict[str, torch.Tensor]:
    """The model's weights in a full-state file (its training weights) or a weights-only file."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            is_state = (fh.metadata() or {}).get("format") == STATE_FORMAT
    except (OSError, SafetensorError) as exc:
        raise _unreadable(path, exc) from exc
    if not is_state:
        return load_weights(path)
    weights: dict[str, torch.Tensor] = load_state(path, spec_hash=None)[1]["model"]
    return weights


def _unreadable(path: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(f"{path} is not a readable safetensors file: {exc}")


def state_files(out_dir: Path) -> list[Path]:
    """The full-state files in `out_dir` by step (temporary files of a killed write excluded)."""
    found = [
        (int(m.group(1)), p) for p in out_dir.glob("state-*") if (m := _STATE_NAME.match(p.name))
    ]
    return [p for _, p in sorted(found)]


def latest_state(out_dir: Path) -> Path | None:
    files = state_files(out_dir)
    return files[-1] if files else None


def prune_states(out_dir: Path, keep: int) -> list[Path]:
    """Delete full-state files but the last `keep` and the one of lowest val_loss; the deleted."""
    files = state_files(out_dir)
    kept = set(files[-keep:]) if keep > 0 else set()
    infos = [read_state_info(p) for p in files]
    scored = [(i.val_loss, i.step, i.path) for i in infos if i.val_loss is not None]
    if scored:
        kept.add(min(scored)[2])
    removed = [p for p in files if p not in kept]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed
