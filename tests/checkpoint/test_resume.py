"""A run stopped, checkpointed and resumed by a fresh `train()` call equals the uninterrupted run
bit for bit: weights, the whole final state (optimizer, regularizers, RNGs) and every metric.

The stop falls between two log steps and mid-epoch; the resumed part crosses an epoch boundary
(a reshuffle), a periodic checkpoint and an evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.checkpoint.helpers import DIGITS, assert_resume_is_bit_identical, job
from trainlib import train
from trainlib.checkpoint import load_state, read_state_info

OPTIMIZERS = {
    "sgd": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "adamw": {"name": "adamw", "lr": 3e-3},
    "sam": {"name": "sam", "base": {"name": "sgd", "lr": 0.05, "momentum": 0.9}},
    "schedulefree": {"name": "schedulefree_adamw", "lr": 3e-3},
    "galore": {"name": "galore", "lr": 3e-3, "rank": 4, "update_proj_gap": 3},
    "frugal": {"name": "frugal", "proj_type": "random"},
    "momo": {"name": "momo"},
    "adafactor": {"name": "adafactor"},
    "muon": {"name": "muon"},
    "lion": {"name": "lion", "lr": 3e-4},
}


@pytest.mark.parametrize("optimizer", OPTIMIZERS.values(), ids=list(OPTIMIZERS))
def test_optimizer_resumes_bit_identically(optimizer: dict[str, Any], tmp_path: Path) -> None:
    assert_resume_is_bit_identical(job(optimizer=optimizer), tmp_path)


REGULARIZERS = {
    "ema": [{"name": "ema", "decay": 0.5}],
    "swa": [{"name": "swa", "start": 2, "every": 1}],
    "mixup": [{"name": "mixup"}],
    "l2_init": [{"name": "l2_init"}],
    "spectral": [{"name": "spectral"}],
    "shrink_perturb": [{"name": "shrink_perturb"}],
    "elr": [{"name": "elr"}],
    "mixup+ema": [{"name": "mixup"}, {"name": "ema", "decay": 0.5}],
}


@pytest.mark.parametrize("regs", REGULARIZERS.values(), ids=list(REGULARIZERS))
def test_regularizer_state_resumes_bit_identically(
    regs: list[dict[str, Any]], tmp_path: Path
) -> None:
    assert_resume_is_bit_identical(job(regularizers=regs), tmp_path)


def test_swa_with_batchnorm_and_dropout_resumes_bit_identically(tmp_path: Path) -> None:
    # SWA's batch-norm refresh runs forward passes with dropout: they must not move the training RNG
    model = {"name": "mlp", "hidden": [16], "norm": "batchnorm", "dropout": 0.2}
    regs = [{"name": "swa", "start": 2, "every": 1}]
    assert_resume_is_bit_identical(job(model=model, regularizers=regs), tmp_path)


def test_dropout_draws_continue_from_the_saved_rng(tmp_path: Path) -> None:
    model = {"name": "mlp", "hidden": [16], "dropout": 0.3}
    assert_resume_is_bit_identical(job(model=model), tmp_path)


def test_online_class_counts_of_the_loss_resume(tmp_path: Path) -> None:
    assert_resume_is_bit_identical(job(loss={"name": "class_weighted"}), tmp_path)


def test_label_noise_and_a_stop_on_a_log_step_resume(tmp_path: Path) -> None:
    assert_resume_is_bit_identical(job(data={"label_noise": 0.2}), tmp_path, stop_at=4)


def test_stop_right_after_a_periodic_checkpoint_reuses_it(tmp_path: Path) -> None:
    whole = assert_resume_is_bit_identical(job(), tmp_path, stop_at=4)
    assert whole.metrics  # the series compared is not empty
    assert read_state_info(tmp_path / "resumed" / "state-00000004.safetensors").step == 4


def test_resume_at_the_last_step_finishes_without_training(tmp_path: Path) -> None:
    spec = job(steps=4)
    done = train(spec, None, out_dir=tmp_path / "a", device=torch.device("cpu"))
    assert done.state is not None
    again = train(
        spec, None, out_dir=tmp_path / "b", device=torch.device("cpu"), resume_from=done.state
    )
    assert again.status == "completed" and again.step == 4
    assert again.final_metrics == done.final_metrics


def test_a_task_sequence_resumes_inside_its_second_task(tmp_path: Path) -> None:
    data = {
        "name": "task_sequence",
        "base": DIGITS,
        "kind": "permuted_input",
        "n_tasks": 3,
        "steps_per_task": 3,
    }
    whole = assert_resume_is_bit_identical(job(data=data, steps=8), tmp_path, stop_at=4)
    assert {name for _, name, _ in whole.metrics} >= {"task", "task_loss"}


def test_a_character_language_model_resumes(tmp_path: Path) -> None:
    data = {"name": "char_text", "batch_size": 8, "context_length": 16}
    model = {"name": "transformer", "d_model": 16, "n_layers": 1, "n_heads": 2, "max_len": 16}
    assert_resume_is_bit_identical(job(data=data, model=model, steps=6), tmp_path)


def test_schedule_free_state_holds_y_and_z_while_the_weights_file_holds_x(tmp_path: Path) -> None:
    spec = job(optimizer=OPTIMIZERS["schedulefree"], steps=4)
    done = train(spec, None, out_dir=tmp_path, device=torch.device("cpu"))
    assert done.state is not None and done.checkpoint is not None
    state = load_state(done.state, spec_hash=None)[1]
    x, y = load_file(str(done.checkpoint)), state["model"]
    groups = state["optimizer"]["param_groups"]
    assert all(group["train_mode"] is True for group in groups)
    checked = 0
    for group in groups:
        beta1 = group["betas"][0]
        for name, index in zip(group["names"], group["params"], strict=True):
            z = state["optimizer"]["state"][index]["z"]
            assert not torch.equal(x[name], y[name]) and not torch.equal(z, y[name])
            # x from y and z as the optimizer's eval() computes it: y.lerp(z, 1 - 1/beta1)
            assert torch.equal(x[name], y[name].lerp(z, 1 - 1 / beta1))
            checked += 1
    assert checked == len(y) == 4


def test_a_chain_of_stops_and_resumes_equals_one_run(tmp_path: Path) -> None:
    # each resumed run writes the state the next one starts from, stops off and on log steps
    model = {"name": "mlp", "hidden": [16], "dropout": 0.1}
    spec = job(model=model, regularizers=[{"name": "mixup"}, {"name": "ema", "decay": 0.5}])
    assert_resume_is_bit_identical(spec, tmp_path, stop_at=(1, 4, 5, 7))
