"""Normalization layers against their papers' formulas (shared/research/formulas-nets.md, s. 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import TypeAdapter, ValidationError
from torch import nn

from trainlib.components.norms import NormField, make_norm
from trainlib.registries import NORMS

ALL_NORMS = [
    "none", "batchnorm", "ghost_batchnorm", "layernorm", "rmsnorm", "crmsnorm", "groupnorm",
    "batch_channel_norm", "power_norm", "online_norm", "unified_norm", "hyperspherical",
]  # fmt: skip
SHAPES = {"features": [(8, 12), (4, 5, 12)], "channels": [(8, 12, 3, 3)]}


def test_every_norm_of_the_issue_is_registered() -> None:
    assert set(NORMS.names()) == set(ALL_NORMS)


def test_norm_field_takes_a_bare_name_or_a_dict() -> None:
    adapter = TypeAdapter(NormField)
    assert adapter.validate_python("layernorm").name == "layernorm"
    ghost = adapter.validate_python({"name": "ghost_batchnorm", "virtual_batch_size": 16})
    assert ghost.virtual_batch_size == 16
    with pytest.raises(ValidationError):
        adapter.validate_python("no_such_norm")
    with pytest.raises(ValidationError):
        adapter.validate_python({"name": "layernorm", "unknown": 1})


@pytest.mark.parametrize("name", ALL_NORMS)
@pytest.mark.parametrize("layout", ["features", "channels"])
def test_shapes_gradients_and_state_round_trip(name: str, layout: str) -> None:
    torch.manual_seed(0)
    for shape in SHAPES[layout]:
        norm = make_norm(name, 12, layout)
        x = torch.randn(*shape, requires_grad=True)
        y = norm(x)
        y.pow(2).sum().backward()
        assert y.shape == x.shape and torch.isfinite(y).all()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        norm.eval()
        copy = make_norm(name, 12, layout)
        copy.load_state_dict(norm.state_dict())
        copy.eval()
        torch.testing.assert_close(copy(x), norm(x))


def test_layernorm_matches_torch_in_both_layouts() -> None:
    x = torch.randn(4, 6, 12)
    torch.testing.assert_close(make_norm("layernorm", 12, "features")(x), F.layer_norm(x, (12,)))
    img = torch.randn(2, 12, 3, 3)
    expected = F.layer_norm(img.permute(0, 2, 3, 1), (12,)).permute(0, 3, 1, 2)
    torch.testing.assert_close(make_norm("layernorm", 12, "channels")(img), expected)


def test_groupnorm_matches_torch_and_reduces_groups_to_a_divisor() -> None:
    img = torch.randn(3, 12, 4, 4)
    norm = make_norm({"name": "groupnorm", "groups": 4}, 12, "channels")
    torch.testing.assert_close(norm(img), F.group_norm(img, 4))
    tokens = torch.randn(2, 5, 12)
    out = make_norm({"name": "groupnorm", "groups": 3}, 12, "features")(tokens)
    torch.testing.assert_close(out, F.group_norm(tokens.reshape(10, 12), 3).reshape(2, 5, 12))
    assert make_norm("groupnorm", 24, "channels").num_groups == 8  # gcd(32, 24)


def test_rmsnorm_worked_example_and_no_recentring() -> None:
    norm = make_norm({"name": "rmsnorm", "eps": 1e-12}, 4, "features")
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    torch.testing.assert_close(
        norm(x), torch.tensor([[0.3651, 0.7303, 1.0954, 1.4606]]), atol=1e-4, rtol=0
    )
    assert not torch.allclose(norm(x + 10.0), norm(x), atol=1e-2)  # a shift is not removed
    torch.testing.assert_close(norm(7.0 * x), norm(x))  # scale invariance
    centred = x - x.mean()
    torch.testing.assert_close(norm(centred), F.layer_norm(centred, (4,), eps=1e-12))
    outside = make_norm({"name": "rmsnorm", "eps": 0.5, "eps_placement": "outside"}, 4, "features")
    torch.testing.assert_close(outside(x), x / (np.sqrt(7.5) + 0.5))


def test_crmsnorm_is_rmsnorm_of_the_implied_zero_mean_vector() -> None:
    crms = make_norm({"name": "crmsnorm", "eps": 1e-12}, 3, "features")
    out = crms(torch.tensor([[-1.5, -0.5, 0.5]]))
    torch.testing.assert_close(out, torch.tensor([[-1.3416, -0.4472, 0.4472]]), atol=1e-4, rtol=0)
    z = torch.randn(5, 9, dtype=torch.float64)
    z = z - z.mean(-1, keepdim=True)
    rms = make_norm({"name": "rmsnorm", "eps": 1e-12}, 9, "features").double()
    crms = make_norm({"name": "crmsnorm", "eps": 1e-12}, 8, "features").double()
    torch.testing.assert_close(crms(z[:, :-1]), rms(z)[:, :-1])


def test_hyperspherical_projects_to_unit_norm() -> None:
    y = make_norm("hyperspherical", 12, "features")(torch.randn(6, 12) * 5)
    torch.testing.assert_close(y.norm(dim=-1), torch.ones(6))
    img = make_norm("hyperspherical", 12, "channels")(torch.randn(2, 12, 3, 3))
    torch.testing.assert_close(img.norm(dim=1), torch.ones(2, 3, 3))


def test_batchnorm_features_layout_pools_every_position() -> None:
    x = torch.randn(4, 5, 12)
    norm = make_norm("batchnorm", 12, "features")
    torch.testing.assert_close(
        norm(x), F.batch_norm(x.reshape(20, 12), None, None, training=True).reshape(4, 5, 12)
    )


def test_ghost_batchnorm_with_one_chunk_is_batchnorm() -> None:
    x = torch.randn(16, 12, 3, 3)
    ghost = make_norm({"name": "ghost_batchnorm", "virtual_batch_size": 16}, 12, "channels")
    plain = nn.BatchNorm2d(12)
    torch.testing.assert_close(ghost(x), plain(x))
    ghost.eval(), plain.eval()
    torch.testing.assert_close(ghost(x), plain(x))


def test_ghost_batchnorm_worked_example_per_virtual_batch() -> None:
    ghost = make_norm(
        {"name": "ghost_batchnorm", "virtual_batch_size": 2, "eps": 1e-10}, 1, "features"
    )
    out = ghost(torch.tensor([[1.0], [3.0], [5.0], [7.0]]))
    torch.testing.assert_close(out.flatten(), torch.tensor([-1.0, 1.0, -1.0, 1.0]))
    # running statistics updated once per chunk, in order: mean 0.2 then 0.78, var 1.1 then 1.19
    torch.testing.assert_close(ghost.running_mean, torch.tensor([0.78]))
    torch.testing.assert_close(ghost.running_var, torch.tensor([1.19]))
    assert int(ghost.num_batches_tracked) == 2


def test_ghost_batchnorm_statistics_stay_inside_each_chunk() -> None:
    torch.manual_seed(0)
    ghost = make_norm({"name": "ghost_batchnorm", "virtual_batch_size": 4}, 3, "features")
    x = torch.randn(8, 3)
    y = ghost(x)
    for chunk in y.split(4):
        torch.testing.assert_close(chunk.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    perm = torch.tensor([2, 0, 3, 1, 4, 5, 6, 7])  # within the first chunk
    torch.testing.assert_close(ghost(x[perm]), y[perm])
    swap = torch.tensor([4, 1, 2, 3, 0, 5, 6, 7])  # across chunks
    assert not torch.allclose(ghost(x[swap]), y[swap])


def test_power_norm_warmup_divides_by_the_batch_quadratic_mean() -> None:
    pn = make_norm({"name": "power_norm", "eps": 1e-12, "group_num": 0}, 1, "features")
    x = torch.tensor([[1.0], [-3.0]], requires_grad=True)
    y = pn(x)
    torch.testing.assert_close(y.flatten(), torch.tensor([0.4472, -1.3416]), atol=1e-4, rtol=0)
    dy = torch.tensor([[0.5], [2.0]])
    y.backward(dy)  # nu = 0 in warmup: dL/dx = gamma dL/dy / sqrt(sigma2_B + eps)
    assert x.grad is not None
    torch.testing.assert_close(x.grad, dy / np.sqrt(5.0))
    shifted = pn(torch.tensor([[11.0], [7.0]]))  # no mean subtraction: a shift is kept
    assert (shifted > 0).all()


def test_power_norm_running_quadratic_mean_follows_the_reference_recursion() -> None:
    torch.manual_seed(0)
    settings = {"name": "power_norm", "group_num": 0, "alpha_fwd": 0.8, "warmup_iters": 3}
    pn = make_norm(settings, 4, "features")
    psi = np.ones(4)
    batches = [torch.randn(6, 4) * (1 + i) for i in range(6)]
    for t, x in enumerate(batches, start=1):
        sigma2 = (x.double() ** 2).mean(0).numpy()
        divisor = sigma2 if t <= 3 else psi.copy()
        out = pn(x)
        expected = x.double().numpy() / np.sqrt(divisor + 1e-5)
        np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-5)
        if t < 3:
            psi = psi * (t - 1) / t + sigma2 / t
        psi = 0.8 * psi + 0.2 * sigma2
        np.testing.assert_allclose(pn.running_phi.numpy(), psi, rtol=1e-5)
    pn.eval()
    x = torch.randn(3, 4)
    torch.testing.assert_close(pn(x), x / torch.sqrt(pn.running_phi + 1e-5))


def test_power_norm_after_warmup_has_no_batch_coupling() -> None:
    pn = make_norm(
        {"name": "power_norm", "group_num": 0, "warmup_iters": 0, "eps": 1e-12}, 1, "features"
    )
    pn.running_phi.fill_(2.8)
    out = pn(torch.tensor([[1.0], [-3.0]]))
    torch.testing.assert_close(out.flatten(), torch.tensor([0.5976, -1.7928]), atol=1e-4, rtol=0)


def test_online_norm_worked_example_and_causality() -> None:
    settings = {"name": "online_norm", "alpha_fwd": 0.5, "eps": 1e-12, "ecm": "none"}
    on = make_norm(settings, 1, "features")
    y = on(torch.tensor([[2.0], [0.0]]))
    torch.testing.assert_close(y.flatten(), torch.tensor([2.0, -0.8165]), atol=1e-4, rtol=0)
    torch.testing.assert_close(on.running_mean, torch.tensor([0.5]))
    torch.testing.assert_close(on.running_var, torch.tensor([1.0]))
    # sample t sees only samples before it
    torch.manual_seed(0)
    x = torch.randn(6, 4, 2, 2)
    a = make_norm({"name": "online_norm", "ecm": "none"}, 4, "channels")
    b = make_norm({"name": "online_norm", "ecm": "none"}, 4, "channels")
    changed = x.clone()
    changed[3] += 5.0
    ya, yb = a(x), b(changed)
    torch.testing.assert_close(ya[: 4 - 1], yb[:3])
    assert not torch.allclose(ya[4:], yb[4:])


def test_online_norm_backward_follows_the_control_process() -> None:
    torch.manual_seed(0)
    ab = 0.9
    on = make_norm({"name": "online_norm", "alpha_bkw": ab, "ecm": "none"}, 3, "features")
    x = torch.randn(5, 3, requires_grad=True)
    y = on(x)
    dy = torch.randn(5, 3)
    y.backward(dy)
    # NumPy replay of the reference recursion (L = 1: spatial means are the values themselves)
    mu, var = np.zeros(3), np.ones(3)
    u, v = np.zeros(3), np.zeros(3)
    xs, ys, scales = x.detach().double().numpy(), [], []
    for xt in xs:
        scale = 1 / np.sqrt(var + 1e-5)
        ys.append((xt - mu) * scale)
        scales.append(scale)
        delta = xt - mu
        var = 0.999 * var + 0.001 * 0.999 * delta**2
        mu = mu + 0.001 * delta
    expected = []
    for dyt, yt, scale in zip(dy.double().numpy(), ys, scales, strict=True):
        zt = dyt - (1 - ab) * v * yt
        v = v + zt * yt
        dx = zt * scale - (1 - ab) * u
        u = u + dx
        expected.append(dx)
    assert x.grad is not None
    np.testing.assert_allclose(x.grad.numpy(), np.array(expected), rtol=1e-4, atol=1e-6)


def test_unified_norm_smooths_with_the_geometric_mean_of_the_window() -> None:
    settings = {"name": "unified_norm", "window": 4, "warmup_iters": 0, "eps": 1e-12}
    un = make_norm(settings, 1, "features")
    ones = torch.ones(4, 1)
    for mean_square in [9.0, 1.0, 4.0, 4.0]:  # steps 1..4 use the batch statistic
        out = un(ones * mean_square**0.5)
        torch.testing.assert_close(out, ones)
    out = un(ones * 4.0)  # step 5: window [1, 4, 4, 16], geometric mean 4, so z = x / 2
    torch.testing.assert_close(out, ones * 2.0)
    un.eval()
    x = torch.randn(3, 1)
    torch.testing.assert_close(un(x), x / torch.sqrt(un.running_var + 1e-12))


def test_unified_norm_warmup_is_batch_quadratic_mean_and_filtration_spares_a_constant_window() -> (
    None
):
    settings = {"name": "unified_norm", "outlier_filtration": True, "warmup_iters": 2, "eps": 1e-12}
    un = make_norm(settings, 2, "features")
    x = torch.tensor([[1.0, 2.0], [-3.0, 2.0]])
    for _ in range(8):
        torch.testing.assert_close(un(x), x / x.pow(2).mean(0).sqrt())
    assert int(un.skip_counter) == 0


def test_batch_channel_norm_estimated_statistics_and_group_stage() -> None:
    torch.manual_seed(0)
    bcn = make_norm({"name": "batch_channel_norm", "groups": 2, "momentum": 0.25}, 4, "channels")
    x = (torch.randn(3, 4, 2, 2) * 2 + 1).requires_grad_()
    y = bcn(x)
    mean = x.detach().mean((0, 2, 3))
    around_old = x.detach().pow(2).mean((0, 2, 3))  # around the previous estimate, 0
    torch.testing.assert_close(bcn.running_mean, 0.25 * mean)
    torch.testing.assert_close(bcn.running_var, 0.75 + 0.25 * around_old)
    grouped = y.detach().reshape(3, 2, -1)
    torch.testing.assert_close(grouped.mean(-1), torch.zeros(3, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(grouped.var(-1, correction=0), torch.ones(3, 2), atol=1e-3, rtol=0)
    y[0].sum().backward()  # estimated statistics carry no gradient: samples stay independent
    assert x.grad is not None and x.grad[1:].abs().max() == 0
    bcn.eval()
    torch.testing.assert_close(bcn(x[:1]), bcn(x)[:1])
