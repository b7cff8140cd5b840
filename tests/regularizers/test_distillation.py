"""Distillation: kd (§6.1) with a teacher trained by trainlib.train, ps_kd (§6.2) of
formulas-regularizers.md. Oracle checks in float64, rtol 1e-6."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.regularizers.helpers import assert_bad_setting, minimal_job, roundtrip, train_minimal_job
from trainlib import CollectingSink, parse_spec, resolve, train
from trainlib.checkpoint import load_weights, save_weights
from trainlib.data import DataInfo
from trainlib.registries import MODELS, REGULARIZERS
from trainlib.regularizers.base import PenaltyContext, Regularizer, SetupContext
from trainlib.regularizers.distillation import Kd, PsKd, TeacherError, kd_term
from trainlib.regularizers.stack import RegularizerStack
from trainlib.step import train_step as plain_step

D = torch.float64
RTOL = 1e-6
DIGITS = DataInfo((64,), 10)


def setup(
    info: DataInfo = DIGITS,
    resolve_job: Any = None,
    *,
    total_steps: int = 40,
    steps_per_epoch: int = 23,
) -> SetupContext:
    return SetupContext(
        info=info,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        batch_size=64,
        train_size=1437,
        seed=0,
        resolve_job=resolve_job,
    )


def build(name: str, context: SetupContext, **settings: Any) -> Regularizer:
    reg: Regularizer = REGULARIZERS.build({"name": name, **settings}, context)
    reg.name = name
    return reg


def context(
    model: nn.Module, x: torch.Tensor, logits: torch.Tensor, step: int = 0, indices: Any = None
) -> PenaltyContext:
    targets = torch.zeros(len(x), dtype=torch.long)
    idx = torch.arange(len(x)) if indices is None else indices
    return PenaltyContext(model, x, logits, targets, idx, step, torch.zeros(()))


# ---------------------------------------------------------------------------------------------
# kd: the term


def test_kd_worked_example() -> None:
    s = torch.tensor([[2.0, 1.0, 0.0]], dtype=D)
    t = torch.tensor([[3.0, 0.0, 0.0]], dtype=D)
    assert float(kd_term(s, t, 2.0, 1.0)) / 4 == pytest.approx(0.0798674, rel=RTOL)
    assert float(kd_term(s, t, 2.0, 1.0)) == pytest.approx(0.3194695, rel=RTOL)
    assert float(kd_term(s, t, 2.0, 0.5)) == pytest.approx(0.5 * 0.3194695, rel=RTOL)


def test_kd_high_temperature_is_logit_matching() -> None:
    s = torch.tensor([[0.3, -0.1, -0.2]], dtype=D)  # zero-mean logits
    t = torch.tensor([[0.5, -0.4, -0.1]], dtype=D)
    # the reference values are printed to 7 decimals: half a unit of the last one
    assert float(kd_term(s, t, 10.0, 1.0)) == pytest.approx(0.0231364, abs=5e-8)
    assert float(kd_term(s, t, 1000.0, 1.0)) == pytest.approx(0.0233315, abs=5e-8)
    limit = float(((s - t) ** 2).sum()) / (2 * 3)
    assert limit == pytest.approx(0.0233333, abs=5e-8)


def test_kd_identities_and_batch_mean() -> None:
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=D)
    assert float(kd_term(z, z, 3.0, 0.9)) == pytest.approx(0.0, abs=1e-15)
    other = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=D)
    per_sample = [float(kd_term(z[i : i + 1], other[i : i + 1], 3.0, 1.0)) for i in range(5)]
    assert float(kd_term(z, other, 3.0, 1.0)) == pytest.approx(sum(per_sample) / 5, rel=1e-12)


def test_kd_gradient() -> None:
    g = torch.Generator().manual_seed(2)
    student = torch.randn(4, 5, generator=g, dtype=D, requires_grad=True)
    teacher = torch.randn(4, 5, generator=g, dtype=D)
    assert torch.autograd.gradcheck(lambda z: kd_term(z, teacher, 2.5, 0.7), (student,))
    # soft CE against the teacher has the same gradient (they differ by the teacher's entropy)
    (grad,) = torch.autograd.grad(kd_term(student, teacher, 2.5, 1.0), student)
    soft = F.softmax(teacher / 2.5, -1)
    ce = -(soft * F.log_softmax(student / 2.5, -1)).sum(-1).mean() * 2.5**2
    (grad_ce,) = torch.autograd.grad(ce, student)
    torch.testing.assert_close(grad, grad_ce, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# kd: the teacher is another job


@pytest.fixture(scope="module")
def teacher_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("teacher")
    job = parse_spec(minimal_job([], hidden=[48], steps=60))
    result = train(job, out_dir=out)
    assert result.status == "completed" and result.checkpoint is not None
    return resolve(job), result.checkpoint


def test_kd_rebuilds_the_teacher_from_its_job(teacher_job: tuple[dict[str, Any], Path]) -> None:
    resolved, checkpoint = teacher_job
    asked: list[str] = []

    def resolve_job(job: str) -> tuple[dict[str, Any], Path]:
        asked.append(job)
        return resolved, checkpoint

    reg = build("kd", setup(resolve_job=resolve_job), teacher_job="job-1")
    assert isinstance(reg, Kd)
    student = MODELS.build({"name": "mlp", "hidden": [16]}, DIGITS)
    reg.configure_model(student)
    assert asked == ["job-1"]
    assert reg.teacher is not None and not reg.teacher.training
    assert all(not p.requires_grad for p in reg.teacher.parameters())
    expected = MODELS.build(resolved["model"], DIGITS)
    expected.load_state_dict(load_weights(checkpoint))
    expected.eval()
    x = torch.randn(7, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(reg.teacher_logits(x), expected(x), rtol=0, atol=0)
    # the student's penalty uses exactly those logits; a copy of the teacher pays nothing
    logits = student(x)
    value = reg.penalty(context(student, x, logits))
    with torch.no_grad():
        torch.testing.assert_close(value, kd_term(logits, expected(x), 4.0, 9.0), rtol=1e-6, atol=0)
        same = reg.penalty(context(student, x, expected(x)))
    assert float(same) == pytest.approx(0.0, abs=1e-6)


def test_kd_trains_a_student_and_logs_the_term(teacher_job: tuple[dict[str, Any], Path]) -> None:
    resolved, checkpoint = teacher_job
    sink = CollectingSink()
    student = parse_spec(
        minimal_job([{"name": "kd", "teacher_job": "teacher", "temperature": 2.0, "alpha": 1.0}])
    )
    result = train(student, sink, resolve_job=lambda job: (resolved, checkpoint))
    assert result.status == "completed"
    assert math.isfinite(result.final_metrics["loss"])
    series = sink.series("reg/kd")
    assert series and all(math.isfinite(v) and v >= 0 for _, v in series)
    assert series[-1][1] < series[0][1]  # the student moves toward its teacher


def test_kd_needs_the_service() -> None:
    reg = build("kd", setup(), teacher_job="x")
    with pytest.raises(
        TeacherError, match="kd needs the service: its teacher is another job's checkpoint"
    ):
        reg.configure_model(MODELS.build({"name": "mlp", "hidden": [8]}, DIGITS))
    with pytest.raises(TeacherError, match="kd needs the service"):
        train(parse_spec(minimal_job([{"name": "kd", "teacher_job": "x"}])))


@pytest.mark.parametrize(
    "info", [DataInfo((64,), 5), DataInfo((32,), 10)], ids=["classes", "inputs"]
)
def test_kd_rejects_a_teacher_of_another_shape(tmp_path: Path, info: DataInfo) -> None:
    other = MODELS.build({"name": "mlp", "hidden": [8]}, info)
    path = save_weights(tmp_path / "checkpoint.safetensors", other.state_dict(), {})
    resolved = {"model": {"name": "mlp", "hidden": [8]}}
    reg = build("kd", setup(resolve_job=lambda job: (resolved, path)), teacher_job="t")
    with pytest.raises(TeacherError, match="teacher job t does not fit this job's data"):
        reg.configure_model(MODELS.build({"name": "mlp", "hidden": [8]}, DIGITS))


def test_kd_teacher_runs_once_per_batch() -> None:
    """A step strategy evaluates the loss twice on one batch: the teacher runs once."""
    calls = []
    reg = Kd(REGULARIZERS.settings_for({"name": "kd", "teacher_job": "t"}), setup())
    teacher = nn.Linear(64, 10)
    teacher.register_forward_hook(lambda *_: calls.append(1))
    reg.teacher = teacher
    x = torch.randn(3, 64)
    reg.teacher_logits(x)
    reg.teacher_logits(x)
    reg.teacher_logits(x.clone())
    assert len(calls) == 2


# ---------------------------------------------------------------------------------------------
# ps_kd


def ps_kd(alpha_T: float = 0.8, **kw: Any) -> PsKd:
    reg = build("ps_kd", setup(**kw), alpha_T=alpha_T)
    assert isinstance(reg, PsKd)
    reg.configure_model(nn.Linear(64, 10))
    return reg


def test_ps_kd_alpha_worked_example() -> None:
    reg = ps_kd(0.8, total_steps=300, steps_per_epoch=1)
    assert reg.alpha(149) == pytest.approx(0.4, rel=1e-12)
    assert reg.alpha(0) == pytest.approx(0.8 / 300, rel=1e-12)
    assert reg.alpha(299) == pytest.approx(0.8, rel=1e-12)
    # per epoch: constant inside one, the last (partial) epoch reaches alpha_T
    partial = ps_kd(0.8, total_steps=40, steps_per_epoch=23)
    assert [partial.alpha(s) for s in (0, 22, 23, 39)] == pytest.approx([0.4, 0.4, 0.8, 0.8])


def test_ps_kd_targets_are_labels_then_blend_with_last_predictions() -> None:
    reg = ps_kd(0.8, total_steps=300, steps_per_epoch=1)
    x = torch.randn(4, 64, dtype=D)
    y = torch.tensor([0, 3, 3, 9])
    idx = torch.tensor([5, 17, 2, 1000])
    _, first = reg.transform_batch(x, y, idx, 0)
    assert torch.equal(first, F.one_hot(y, 10).to(D))  # epoch 0: plain labels
    logits = torch.randn(4, 10, dtype=D)
    reg.penalty(context(nn.Identity(), x, logits, step=0, indices=idx))  # records, adds nothing
    # a second pass in the same step (a step strategy) does not overwrite the record
    reg.penalty(context(nn.Identity(), x, torch.zeros(4, 10, dtype=D), step=0, indices=idx))
    _, later = reg.transform_batch(x, y, idx, 149)
    expected = 0.6 * F.one_hot(y, 10).to(D) + 0.4 * F.softmax(logits, -1)
    torch.testing.assert_close(later, expected, rtol=1e-6, atol=1e-7)  # table kept in float32
    torch.testing.assert_close(later.sum(-1), torch.ones(4, dtype=D), rtol=1e-6, atol=0)
    # samples never seen keep their labels
    _, unseen = reg.transform_batch(x, y, torch.tensor([0, 1, 3, 4]), 149)
    assert torch.equal(unseen, F.one_hot(y, 10).to(D))


def test_ps_kd_alpha_zero_is_cross_entropy_and_its_gradient() -> None:
    reg = ps_kd(0.0)
    x = torch.randn(4, 64, dtype=D)
    y = torch.tensor([1, 2, 3, 4])
    idx = torch.arange(4)
    reg.penalty(context(nn.Identity(), x, torch.randn(4, 10, dtype=D), indices=idx))
    _, targets = reg.transform_batch(x, y, idx, 30)
    logits = torch.randn(4, 10, dtype=D, requires_grad=True)
    torch.testing.assert_close(
        F.cross_entropy(logits, targets), F.cross_entropy(logits, y), rtol=1e-12, atol=0
    )
    blended = ps_kd(0.8)
    blended.penalty(context(nn.Identity(), x, torch.randn(4, 10, dtype=D), indices=idx))
    _, soft = blended.transform_batch(x, y, idx, 30)
    assert torch.autograd.gradcheck(lambda z: F.cross_entropy(z, soft), (logits,))


def test_ps_kd_state_round_trip() -> None:
    reg = ps_kd()
    x = torch.randn(8, 64)
    idx = torch.arange(100, 108)
    reg.penalty(context(nn.Identity(), x, torch.randn(8, 10), indices=idx))
    twin = ps_kd()
    twin.load_state_dict(roundtrip(reg.state_dict()))
    y = torch.arange(8)
    for step in (0, 30):
        assert torch.equal(
            reg.transform_batch(x, y, idx, step)[1], twin.transform_batch(x, y, idx, step)[1]
        )


def test_ps_kd_resumed_run_equals_uninterrupted() -> None:
    n, batch = 48, 16
    g = torch.Generator().manual_seed(1)
    data_x, data_y = torch.randn(n, 6, generator=g, dtype=D), torch.randint(0, 3, (n,), generator=g)
    context_ = SetupContext(
        DataInfo((6,), 3), total_steps=12, steps_per_epoch=3, batch_size=batch, train_size=n, seed=0
    )

    def fresh(seed: int) -> tuple[nn.Module, torch.optim.Optimizer, RegularizerStack]:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).to(D)
        stack = RegularizerStack.build([REGULARIZERS.settings_for({"name": "ps_kd"})], context_)
        stack.configure_model(model)
        return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), stack

    def run(
        model: nn.Module, opt: torch.optim.Optimizer, stack: RegularizerStack, start: int, stop: int
    ) -> None:
        for step in range(start, stop):
            epoch, pos = divmod(step, 3)
            idx = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))[
                pos * batch : (pos + 1) * batch
            ]
            x, y = stack.transform_batch(data_x[idx], data_y[idx], idx, step)
            plain_step(
                model, opt, x, y, stack.loss_closure(nn.CrossEntropyLoss(), model, x, idx, step)
            )
            stack.after_step(model, opt, step)

    whole = fresh(0)
    run(*whole, 0, 12)
    first = fresh(0)
    run(*first, 0, 5)
    saved = roundtrip(
        {"m": first[0].state_dict(), "o": first[1].state_dict(), "r": first[2].state_dict()}
    )
    second = fresh(3)
    second[0].load_state_dict(saved["m"])
    second[1].load_state_dict(saved["o"])
    second[2].load_state_dict(saved["r"])
    run(*second, 5, 12)
    for a, b in zip(whole[0].state_dict().values(), second[0].state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert whole[2].state_dict().keys() == second[2].state_dict().keys()
    table_a, table_b = (
        whole[2].state_dict()["ps_kd"]["table"],
        second[2].state_dict()["ps_kd"]["table"],
    )
    assert torch.equal(table_a, table_b)


def test_ps_kd_trains_the_minimal_job() -> None:
    result = train_minimal_job([{"name": "ps_kd"}])
    assert math.isfinite(result.final_metrics["val_loss"])


def test_flags() -> None:
    assert REGULARIZERS.get("ps_kd").settings.soft_targets is True
    assert REGULARIZERS.get("kd").settings.soft_targets is False
    assert not REGULARIZERS.get("kd").settings.step_strategy


@pytest.mark.parametrize(
    ("reg", "path"),
    [
        ({"name": "kd"}, "regularizers[0].teacher_job"),
        ({"name": "kd", "teacher_job": ""}, "regularizers[0].teacher_job"),
        ({"name": "kd", "teacher_job": "t", "temperature": 0}, "regularizers[0].temperature"),
        ({"name": "kd", "teacher_job": "t", "alpha": -1}, "regularizers[0].alpha"),
        ({"name": "ps_kd", "alpha_T": 1.5}, "regularizers[0].alpha_T"),
        ({"name": "ps_kd", "alpha": 0.5}, "regularizers[0].alpha"),
    ],
)
def test_bad_settings_name_the_field(reg: dict[str, Any], path: str) -> None:
    assert_bad_setting(reg, path)


def test_kd_default_convention() -> None:
    """Base loss weight 1 + alpha·T²·KL; alpha 9 is Hinton's α = 0.9 up to the factor 1 − α."""
    settings = REGULARIZERS.settings_for({"name": "kd", "teacher_job": "t"})
    assert (settings.temperature, settings.alpha) == (4.0, 9.0)
    ce, kl = torch.tensor(0.7, dtype=D), torch.tensor(0.05, dtype=D)
    hinton = 0.1 * ce + 0.9 * 16 * kl
    ours = ce + 9.0 * 16 * kl
    torch.testing.assert_close(hinton, 0.1 * ours, rtol=1e-12, atol=0)
