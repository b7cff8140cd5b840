"""The class-prior losses' online counts: what is counted, the estimate after an epoch, the state
round trip and a resumed run that equals an uninterrupted one bit for bit."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainlib.registries import LOSSES

D = torch.float64
C = 4
ONLINE = [
    {"name": "logit_adjusted"},
    {"name": "vs_loss"},
    {"name": "class_weighted"},
    {"name": "class_weighted", "scheme": "inverse_frequency"},
]
IDS = ["logit_adjusted", "vs_loss", "class_weighted", "class_weighted_inverse"]


def labels(n: int = 120, seed: int = 0) -> torch.Tensor:
    """Imbalanced labels: class c has weight 8, 4, 2, 1."""
    g = torch.Generator().manual_seed(seed)
    return torch.multinomial(torch.tensor([8.0, 4, 2, 1]), n, replacement=True, generator=g)


def logits_for(y: torch.Tensor, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(y), C, generator=g, dtype=D)


def counts_of(loss: nn.Module) -> torch.Tensor:
    counts = loss.class_counts.counts
    assert isinstance(counts, torch.Tensor)
    return counts


def explicit(cfg: dict[str, Any], counts: list[float]) -> dict[str, Any]:
    key = "class_priors" if cfg["name"] == "logit_adjusted" else "class_counts"
    return {**cfg, key: counts}


@pytest.mark.parametrize("cfg", ONLINE, ids=IDS)
def test_counts_every_training_batch_once(cfg: dict[str, Any]) -> None:
    loss = LOSSES.build(cfg)
    y = labels()
    z = logits_for(y)
    first, second = y[:50], y[50:]
    loss(z[:50], first)
    torch.testing.assert_close(counts_of(loss), torch.bincount(first, minlength=C).to(D))
    loss(z[:50], first)  # the same target again: a second pass (SAM, AWP) on the same batch
    torch.testing.assert_close(counts_of(loss), torch.bincount(first, minlength=C).to(D))
    loss(z[50:], second)
    torch.testing.assert_close(counts_of(loss), torch.bincount(y, minlength=C).to(D))
    # evaluation (no_grad, or the module in eval mode) is not counted
    with torch.no_grad():
        loss(z[:10], y[:10].clone())
    loss.eval()
    loss(z[:10], y[:10].clone())
    loss.train()
    torch.testing.assert_close(counts_of(loss), torch.bincount(y, minlength=C).to(D))
    # soft targets add their rows
    soft = torch.full((2, C), 0.25, dtype=D)
    loss(z[:2], soft)
    torch.testing.assert_close(counts_of(loss), torch.bincount(y, minlength=C).to(D) + 0.5)


@pytest.mark.parametrize("cfg", ONLINE, ids=IDS)
def test_after_one_epoch_the_estimate_is_the_training_priors(cfg: dict[str, Any]) -> None:
    y = labels()
    z = logits_for(y)
    online = LOSSES.build(cfg)
    for idx in torch.randperm(len(y), generator=torch.Generator().manual_seed(3)).split(32):
        online(z[idx], y[idx])  # one epoch in shuffled batches
    counts = torch.bincount(y, minlength=C).to(D)
    given = LOSSES.build(explicit(cfg, counts.tolist()))
    online.eval()
    probe_y = torch.tensor([0, 1, 2, 3, 3])
    probe_z = logits_for(probe_y, seed=5)
    torch.testing.assert_close(
        online(probe_z, probe_y), given(probe_z, probe_y), rtol=1e-12, atol=0
    )


@pytest.mark.parametrize("cfg", ONLINE, ids=IDS)
def test_before_any_training_batch_the_priors_are_uniform(cfg: dict[str, Any]) -> None:
    loss = LOSSES.build(cfg)
    y = labels(8)
    z = logits_for(y)
    with torch.no_grad():
        got = loss(z, y)
    assert counts_of(loss).numel() == 0
    # uniform priors: a constant logit shift (ι), Δ = 1, equal weights — cross-entropy
    torch.testing.assert_close(got, F.cross_entropy(z, y))


def test_an_unseen_class_counts_as_one() -> None:
    loss = LOSSES.build({"name": "logit_adjusted"})
    y = torch.tensor([0, 0, 0, 1, 1, 2])  # class 3 not seen yet
    z = logits_for(y)
    got = loss(z, y)
    priors = torch.tensor([3.0, 2, 1, 1], dtype=D) / 7
    torch.testing.assert_close(got, F.cross_entropy(z + priors.log(), y))
    assert torch.isfinite(got)


def test_given_priors_are_never_updated() -> None:
    loss = LOSSES.build({"name": "vs_loss", "class_counts": [5.0, 4, 3, 2]})
    y = labels(16)
    loss(logits_for(y), y)
    torch.testing.assert_close(counts_of(loss), torch.tensor([5.0, 4, 3, 2], dtype=D))
    assert torch.equal(loss.state_dict()["class_counts.counts"], counts_of(loss))


@pytest.mark.parametrize("cfg", ONLINE, ids=IDS)
def test_state_round_trip(cfg: dict[str, Any]) -> None:
    y = labels()
    z = logits_for(y)
    loss = LOSSES.build(cfg)
    for start in range(0, 64, 16):
        loss(z[start : start + 16], y[start : start + 16])
    state = copy.deepcopy(loss.state_dict())
    fresh = LOSSES.build(cfg)
    assert counts_of(fresh).numel() == 0  # sized lazily: load_state_dict takes the saved size
    fresh.load_state_dict(state)
    for start in range(64, 120, 16):  # identical next outputs (and counts)
        a = loss(z[start : start + 16], y[start : start + 16])
        b = fresh(z[start : start + 16], y[start : start + 16])
        assert torch.equal(a, b)
    assert torch.equal(counts_of(loss), counts_of(fresh))


def _setup(cfg: dict[str, Any]) -> tuple[nn.Module, torch.optim.Optimizer, nn.Module]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, C))
    return model, torch.optim.Adam(model.parameters(), lr=1e-2), LOSSES.build(cfg)


def _run(model: nn.Module, opt: torch.optim.Optimizer, loss_fn: nn.Module, steps: range) -> None:
    x = torch.randn(120, 6, generator=torch.Generator().manual_seed(7))
    y = labels()
    for step in steps:
        idx = torch.randperm(120, generator=torch.Generator().manual_seed(step))[:24]
        loss = loss_fn(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("cfg", ONLINE, ids=IDS)
def test_resumed_training_equals_an_uninterrupted_run(cfg: dict[str, Any]) -> None:
    model, opt, loss_fn = _setup(cfg)
    _run(model, opt, loss_fn, range(12))

    model2, opt2, loss2 = _setup(cfg)
    _run(model2, opt2, loss2, range(5))
    saved = copy.deepcopy(
        {"model": model2.state_dict(), "opt": opt2.state_dict(), "loss": loss2.state_dict()}
    )
    model3, opt3, loss3 = _setup(cfg)  # rebuilt from scratch, then restored
    model3.load_state_dict(saved["model"])
    opt3.load_state_dict(saved["opt"])
    loss3.load_state_dict(saved["loss"])
    _run(model3, opt3, loss3, range(5, 12))

    for a, b in zip(model.parameters(), model3.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(counts_of(loss_fn), counts_of(loss3))
