"""A SAM-style second pass leaves every normalization's running state as it was."""

from __future__ import annotations

import pytest
import torch

from trainlib.components.norms import make_norm
from trainlib.step import batchnorm_stats_frozen

STATEFUL = ["batchnorm", "ghost_batchnorm", "power_norm", "online_norm", "unified_norm"]


@pytest.mark.parametrize("name", STATEFUL)
def test_frozen_pass_restores_every_buffer(name: str) -> None:
    torch.manual_seed(0)
    norm = make_norm(name, 6, "features").train()
    norm(torch.randn(16, 6))  # some state to protect
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    with batchnorm_stats_frozen(norm):
        norm(torch.randn(16, 6) * 3 + 1)
    after = norm.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # Outside the context the state does move: the test can tell the difference.
    norm(torch.randn(16, 6) * 3 + 1)
    assert any(not torch.equal(before[k], norm.state_dict()[k]) for k in before)
