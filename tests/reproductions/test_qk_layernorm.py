"""Small-scale proxies (Wortsman et al., 2023) at toy scale: the two arms of
examples/qk-layernorm-lr-sweep/ on a smaller transformer and budget, at a good and a too-high
learning rate; with qk-layernorm and the z-loss the final loss varies less between the two."""

from __future__ import annotations

import pytest

from bench.reproduce import SweepArm, qk_sweep

TINY = {
    "data": {"context_length": 32, "batch_size": 16},
    "model": {"d_model": 32, "max_len": 32},
    "schedule": {"warmup_steps": 20},
    "train": {"steps": 150, "eval_every": 150, "log_every": 50},
}
LRS = (3e-2, 3e-1)


def test_qk_layernorm_and_z_loss_lower_the_lr_sensitivity() -> None:
    baseline = qk_sweep("baseline", LRS, TINY)
    mitigated = qk_sweep("qk-layernorm", LRS, TINY)
    assert mitigated.spread < baseline.spread
    assert mitigated.final_val_loss[3e-1] < baseline.final_val_loss[3e-1]


def test_spread_is_max_minus_min() -> None:
    arm = SweepArm({1e-3: 2.5, 1e-2: 1.75, 1e-1: 3.0})
    assert arm.spread == pytest.approx(1.25)
