"""Gradual magnitude pruning (Zhu & Gupta) and N:M sparsity: the schedule's worked example, exact
per-layer counts at known steps, masks kept through optimizer steps, state and digits jobs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.compression.helpers import digits_job, run
from trainlib.compression import MagnitudePruningSettings, NMSparsitySettings, build_pruner
from trainlib.compression.masks import cubic_sparsity, magnitude_mask, nm_mask
from trainlib.spec import SpecError, parse_spec


def test_cubic_schedule_worked_example() -> None:
    """s_i = 0, s_f = 0.9 over 1000 steps: 0.520, 0.7875, 0.886 at 250, 500, 750."""
    values = [cubic_sparsity(t, 0.0, 0.9, 0, 1000) for t in (0, 250, 500, 750, 1000, 2000)]
    assert values == pytest.approx([0.0, 0.5203125, 0.7875, 0.8859375, 0.9, 0.9])
    steps = [cubic_sparsity(t, 0.1, 0.8, 100, 600) for t in range(0, 700, 10)]
    assert steps == sorted(steps)  # non-decreasing


def test_magnitude_mask_prunes_the_smallest() -> None:
    torch.manual_seed(0)
    w = torch.randn(7, 11)
    mask = magnitude_mask(w, 0.3, torch.ones_like(w, dtype=torch.bool))
    k = round(0.3 * w.numel())
    assert int((~mask).sum()) == k
    ranks = np.argsort(np.abs(w.numpy()).ravel(), kind="stable")
    expected = np.ones(w.numel(), dtype=bool)
    expected[ranks[:k]] = False
    np.testing.assert_array_equal(mask.numpy().ravel(), expected)


def test_magnitude_mask_keeps_earlier_pruning() -> None:
    """Already-pruned weights are pruned first, even when they are not the smallest now."""
    w = torch.tensor([0.5, 0.1, 0.2, 0.3])
    keep = torch.tensor([False, True, True, True])
    assert magnitude_mask(w, 0.5, keep).tolist() == [False, False, True, True]


def test_nm_worked_example() -> None:
    """[0.1, -0.5, 0.3, 0.05] with 2:4 keeps -0.5 and 0.3."""
    w = torch.tensor([[0.1, -0.5, 0.3, 0.05]])
    assert nm_mask(w, 2, 4).tolist() == [[False, True, True, False]]


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (3, 8)])
def test_nm_mask_has_n_per_group(n: int, m: int) -> None:
    torch.manual_seed(1)
    linear = torch.randn(5, 4 * m)
    counts = nm_mask(linear, n, m).reshape(-1, m).sum(dim=1)
    assert counts.eq(n).all()
    conv = torch.randn(6, 2 * m, 3, 3)
    mask = nm_mask(conv, n, m)
    groups = mask.movedim(1, -1).reshape(-1, m)  # groups along the input channels
    assert groups.sum(dim=1).eq(n).all()
    kept = conv.abs().movedim(1, -1).reshape(-1, m)
    smallest_kept = torch.where(groups, kept, torch.inf).amin(dim=1)
    largest_pruned = torch.where(groups, -torch.inf, kept).amax(dim=1)
    assert (smallest_kept >= largest_pruned).all()


def test_nm_rejects_misfit_input_dimension() -> None:
    with pytest.raises(ValueError, match="not a multiple of 4"):
        nm_mask(torch.randn(4, 6), 2, 4)


def small_model() -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 3))


def sgd_steps(model: nn.Module, steps: int, hook: object) -> list[int]:
    """Momentum SGD with weight decay on random data, calling `hook(t)` after each step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    done: list[int] = []
    for t in range(1, steps + 1):
        x, y = torch.randn(16, 12), torch.randint(0, 3, (16,))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        hook(t)
        done.append(t)
    return done


def test_gradual_pruning_hits_schedule_at_known_steps() -> None:
    model = small_model()
    s = MagnitudePruningSettings(final_sparsity=0.8, start_step=2, end_step=12, frequency=5)
    pruner = build_pruner(s, model, total_steps=20)
    assert list(pruner.weights) == ["0.weight", "2.weight"]  # the head (4) is left dense
    observed: dict[int, list[float]] = {}

    def after(t: int) -> None:
        pruner.after_step(t)
        for name, w in pruner.weights.items():
            assert w[~pruner.masks[name]].eq(0).all()  # exactly zero after every step
        observed[t] = [float((w == 0).float().mean()) for w in pruner.weights.values()]

    sgd_steps(model, 20, after)
    for t, target in [(1, 0.0), (2, 0.0), (7, cubic_sparsity(7, 0, 0.8, 2, 12)), (12, 0.8)]:
        expected = [round(target * w.numel()) / w.numel() for w in pruner.weights.values()]
        assert observed[t] == pytest.approx(expected)
    assert observed[11] == observed[7]  # masks change only on update steps (2, 7, 12)
    assert observed[20] == observed[12]
    assert pruner.sparsity() == pytest.approx(0.8, abs=1e-2)


def test_default_end_step_is_three_quarters() -> None:
    pruner = build_pruner(MagnitudePruningSettings(), small_model(), total_steps=400)
    assert pruner.end_step == 300
    assert pruner.target_sparsity(300) == 0.5


def test_nm_pruning_keeps_pattern_through_training() -> None:
    model = small_model()
    pruner = build_pruner(NMSparsitySettings(n=2, m=4), model, total_steps=10)
    sgd_steps(model, 10, pruner.after_step)
    for w in pruner.weights.values():
        nonzero = (w != 0).reshape(-1, 4).sum(dim=1)
        assert nonzero.eq(2).all()
    assert pruner.sparsity() == 0.5


def test_nm_skips_layers_that_do_not_fit() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8, 2))
    pruner = build_pruner(NMSparsitySettings(), model, total_steps=5)
    assert list(pruner.weights) == ["1.weight"]


def test_masks_round_trip() -> None:
    model = small_model()
    s = MagnitudePruningSettings(final_sparsity=0.6, end_step=4, frequency=2)
    pruner = build_pruner(s, model, total_steps=10)
    sgd_steps(model, 4, pruner.after_step)
    state = pruner.state_dict()
    fresh = build_pruner(s, model, total_steps=10)
    fresh.load_state_dict(state)
    for name, mask in pruner.masks.items():
        assert torch.equal(fresh.masks[name], mask)
    assert fresh.sparsity() == pruner.sparsity() > 0.5
    with pytest.raises(ValueError, match="expected"):
        fresh.load_state_dict({"masks": {"x.weight": mask}})


@pytest.mark.parametrize(
    ("pruning", "message"),
    [
        ({"name": "n_m", "n": 4, "m": 4}, "n must be smaller than m"),
        ({"name": "magnitude", "initial_sparsity": 0.6, "final_sparsity": 0.5}, "must not exceed"),
        ({"name": "magnitude", "start_step": 10, "end_step": 5}, "end_step must come after"),
        ({"name": "lottery"}, "'magnitude', 'n_m'"),
    ],
)
def test_spec_rejects_bad_pruning(pruning: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(digits_job(pruning=pruning))
    [error] = info.value.errors
    assert error["path"] == "train.pruning" and message in error["message"]


@pytest.mark.parametrize(
    ("pruning", "sparsity"),
    [
        ({"name": "magnitude", "final_sparsity": 0.7, "end_step": 40, "frequency": 10}, 0.7),
        ({"name": "n_m", "n": 2, "m": 4}, 0.5),
    ],
)
def test_digits_trains_pruned(pruning: dict[str, object], sparsity: float) -> None:
    result, sink = run(digits_job(steps=80, pruning=pruning))
    assert result.final_metrics["sparsity"] == pytest.approx(sparsity, abs=1e-3)
    assert result.final_metrics["val_accuracy"] > 0.8
    assert [v for _, v in sink.series("sparsity")] == sorted(v for _, v in sink.series("sparsity"))
