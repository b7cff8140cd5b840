"""The full-state file format: no pickle, exact round trips of nested state, the spec guard,
atomic writes, and pruning to the last k plus the best."""

from __future__ import annotations

import json
import math
import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open

from tests.checkpoint.helpers import CPU, job
from trainlib import train
from trainlib.checkpoint import (
    STATE_FORMAT,
    CheckpointError,
    load_state,
    prune_states,
    read_state_info,
    save_state,
    state_files,
    state_path,
)
from trainlib.state import flatten, rng_state, set_rng_state, unflatten


def nested() -> dict[str, Any]:
    g = torch.Generator().manual_seed(7)
    return {
        "state": {0: {"step": torch.tensor(3.0, dtype=torch.float64), "m": torch.ones(2, 3)}},
        "groups": [{"params": [0], "betas": (0.9, 0.999), "foreach": None, "train_mode": True}],
        "floats": [0.1, -0.0, math.inf, -math.inf, 1e-320, 2.0],
        "ints": [0, -5, 2**62],
        "text": "swa#2",
        "generator": g.get_state(),
        "empty": {"a": {}, "b": [], "c": torch.empty(0)},
        "a.b": torch.zeros(1),
        "a": {"b": torch.ones(1)},  # the same dotted path as "a.b": both kept
    }


def same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float):
        return isinstance(b, float) and math.copysign(1, a) == math.copysign(1, b) and a == b
    return type(a) is type(b) and a == b


def test_flatten_round_trips_keys_types_and_float_bits() -> None:
    state = nested()
    tensors, skeleton = flatten(state)
    json.loads(skeleton)  # plain JSON
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    assert {"state.0.m", "a.b", "a.b_"} <= set(tensors)
    assert same(state, unflatten(tensors, skeleton))


def test_flatten_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError, match=r"object at x\.0"):
        flatten({"x": [object()]})
    with pytest.raises(TypeError, match="not a str or int"):
        flatten({(1, 2): 3})


def test_rng_state_restores_torch_python_and_numpy_draws() -> None:
    saved = unflatten(*flatten(rng_state()))
    expected = (torch.rand(3), random.random(), np.random.rand(2))
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    set_rng_state(saved)
    got = (torch.rand(3), random.random(), np.random.rand(2))
    assert torch.equal(expected[0], got[0])
    assert expected[1] == got[1]
    assert np.array_equal(expected[2], got[2])


def test_state_file_is_plain_safetensors_without_pickle(tmp_path: Path) -> None:
    path = save_state(tmp_path / "state-00000001.safetensors", nested(), step=1, spec_hash="ab")
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])  # a JSON header, then raw tensor bytes
    assert header["__metadata__"]["format"] == STATE_FORMAT
    assert b"\x80\x04" not in raw[: 8 + header_len] and b"torch._utils" not in raw
    with safe_open(str(path), framework="pt") as fh:
        assert fh.metadata()["step"] == "1"
    step, loaded = load_state(path, spec_hash="ab")
    assert step == 1 and same(nested(), loaded)


def test_a_real_run_writes_loadable_states_every_checkpoint_step(tmp_path: Path) -> None:
    spec = job(steps=8, checkpoint_every=2, keep_checkpoints=10)
    result = train(spec, None, out_dir=tmp_path, device=CPU)
    assert [read_state_info(p).step for p in state_files(tmp_path)] == [2, 4, 6, 8]
    assert result.state == state_path(tmp_path, 8)
    with safe_open(str(result.state), framework="pt") as fh:
        keys = set(fh.keys())
    assert {"data_order.perm", "rng.torch", "log.loss_sum"} <= keys
    assert any(k.startswith("model.") for k in keys)
    assert any(k.startswith("optimizer.state.0.") for k in keys)


def test_another_spec_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    done = train(job(steps=2), None, out_dir=tmp_path, device=CPU)
    assert done.state is not None
    other = job(steps=2, optimizer={"name": "adamw", "lr": 1e-2})
    with pytest.raises(CheckpointError, match="resumes only the spec that wrote it"):
        train(other, None, out_dir=tmp_path / "b", device=CPU, resume_from=done.state)


def test_weights_only_and_truncated_files_are_refused(tmp_path: Path) -> None:
    done = train(job(steps=2), None, out_dir=tmp_path, device=CPU)
    assert done.checkpoint is not None and done.state is not None
    with pytest.raises(CheckpointError, match="not a full-state checkpoint"):
        load_state(done.checkpoint, spec_hash="x")
    cut = tmp_path / "cut.safetensors"
    for keep in (200, len(done.state.read_bytes()) - 16):  # the header, or a tensor, cut short
        cut.write_bytes(done.state.read_bytes()[:keep])
        with pytest.raises(CheckpointError, match="not a readable safetensors file"):
            load_state(cut, spec_hash="x")


# A child process whose files may not grow past 64 KiB: the 4 MB state fails mid-write (EFBIG).
_CUT_SHORT = """
import resource, signal, sys
from pathlib import Path
import torch
from trainlib.checkpoint import save_state
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))
try:
    save_state(Path(sys.argv[1]), {"w": torch.zeros(1 << 20)}, step=5, spec_hash="h")
except Exception as exc:  # safetensors reports EFBIG as its own error
    print("write failed:", exc)
"""


def test_a_failed_write_keeps_the_old_file_and_leaves_no_partial(tmp_path: Path) -> None:
    path = save_state(state_path(tmp_path, 5), {"w": torch.ones(2)}, step=5, spec_hash="h")
    before = path.read_bytes()
    child = subprocess.run(
        [sys.executable, "-c", _CUT_SHORT, str(path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    assert "File too large" in child.stdout, child.stderr
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file


def test_pruning_keeps_the_last_k_and_the_best(tmp_path: Path) -> None:
    losses = {1: 0.9, 2: 0.2, 3: 0.5, 4: 0.6, 5: 0.7, 6: None}
    for step, loss in losses.items():
        save_state(state_path(tmp_path, step), {}, step=step, spec_hash="h", val_loss=loss)
    (tmp_path / ".state-00000007.safetensors.tmp").write_bytes(b"partial")  # a killed write
    removed = prune_states(tmp_path, keep=3)
    assert [read_state_info(p).step for p in state_files(tmp_path)] == [2, 4, 5, 6]
    assert sorted(p.name for p in removed) == [
        "state-00000001.safetensors",
        "state-00000003.safetensors",
    ]


def test_local_runs_keep_the_configured_number(tmp_path: Path) -> None:
    train(
        job(steps=8, checkpoint_every=1, keep_checkpoints=2, eval_every=100),
        None,
        out_dir=tmp_path,
        device=CPU,
    )
    # no evaluation before the end: no val_loss to rank, so exactly the last two remain
    assert [read_state_info(p).step for p in state_files(tmp_path)] == [7, 8]


def test_the_service_can_turn_local_pruning_off(tmp_path: Path) -> None:
    spec = job(steps=4, checkpoint_every=1, keep_checkpoints=1)
    train(spec, None, out_dir=tmp_path, device=CPU, prune_checkpoints=False)
    assert len(state_files(tmp_path)) == 4
