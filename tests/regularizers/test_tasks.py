"""Regularizers on sequence and regression data: the ones that cannot train there are rejected
before anything runs, with the reason; the ones that can, train (a character transformer)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from tests.regularizers.helpers import spec_error_paths
from trainlib import SpecError, parse_spec, train
from trainlib.catalog import catalog
from trainlib.components.models_transformer import CausalSelfAttention
from trainlib.data import TASKS, DataInfo
from trainlib.errors import DataError
from trainlib.registries import MODELS, REGULARIZERS
from trainlib.regularizers import RegularizerStack, SetupContext
from trainlib.regularizers.grad_norm_penalty import grad_norm
from trainlib.regularizers.weight_perturbation import per_sample_ce

CHAR_TEXT = {"name": "char_text", "batch_size": 4, "context_length": 16}
TRANSFORMER = {"name": "transformer", "d_model": 16, "n_layers": 1, "n_heads": 2}
REGRESSION = {"name": "teacher_student", "batch_size": 16}


def job(data: dict[str, Any], model: dict[str, Any], reg: dict[str, Any], **extra: Any) -> dict:
    return {
        "data": data,
        "model": model,
        "optimizer": {"name": "sgd", "lr": 0.01},
        "regularizers": [reg],
        "train": {"steps": 4, "log_every": 1, "eval_every": 4, "device": "cpu"},
        **extra,
    }


def test_the_task_lists_of_the_label_mixers_and_distillers() -> None:
    tasks = {name: REGULARIZERS.get(name).settings.tasks for name in REGULARIZERS.names()}
    assert tasks["mixup"] == tasks["cutmix"] == {"classification", "regression"}
    assert tasks["elr"] == tasks["ps_kd"] == tasks["rank_mixup"] == {"classification"}
    assert tasks["kd"] == {"classification", "sequence"}
    assert tasks["l2"] == tasks["grad_norm_penalty"] == tasks["rwp"] == TASKS
    listed = {e["name"]: e["tasks"] for e in catalog()["regularizer"]}  # GET /v1/components
    assert listed["mixup"] == ["classification", "regression"]
    assert listed["l2"] == ["classification", "regression", "sequence"]


@pytest.mark.parametrize(
    "reg", [{"name": "mixup"}, {"name": "rank_mixup"}, {"name": "elr"}, {"name": "ps_kd"}]
)
def test_a_label_mixer_on_character_text_is_rejected_with_the_reason(reg: dict) -> None:
    raw = job(CHAR_TEXT, TRANSFORMER, reg)
    assert spec_error_paths(raw) == ["(spec)"]
    with pytest.raises(SpecError, match=f"regularizer {reg['name']} works on classification"):
        parse_spec(raw)
    with pytest.raises(SpecError, match="this data set is a sequence task"):
        parse_spec(raw)


def test_on_regression_mixup_is_accepted_and_elr_is_not() -> None:
    mlp = {"name": "mlp", "hidden": [8]}
    result = train(parse_spec(job(REGRESSION, mlp, {"name": "mixup"}, loss={"name": "mse"})))
    assert result.status == "completed" and math.isfinite(result.final_metrics["loss"])
    with pytest.raises(SpecError, match="elr works on classification data, and this data set "):
        parse_spec(job(REGRESSION, mlp, {"name": "elr"}, loss={"name": "mse"}))


def test_an_upload_is_checked_when_its_task_is_known_at_build() -> None:
    """An uploaded set's task is read from the file when the job starts: the stack checks it."""
    setup = SetupContext(
        info=DataInfo((16,), 30, task="sequence", vocab_size=30),
        total_steps=4,
        steps_per_epoch=2,
        batch_size=4,
        train_size=8,
        seed=0,
    )
    with pytest.raises(DataError, match="regularizer mixup works on classification or regression"):
        RegularizerStack.build([REGULARIZERS.settings_for({"name": "mixup"})], setup)
    built = RegularizerStack.build([REGULARIZERS.settings_for({"name": "l2"})], setup)
    assert [r.name for r in built.items] == ["l2"]


@pytest.mark.parametrize(
    "reg",
    [{"name": "grad_norm_penalty"}, {"name": "rwp", "warmup_epochs": 0, "inner_steps": 2}],
    ids=["grad_norm_penalty", "rwp"],
)
def test_gradient_and_weight_perturbation_regularizers_train_a_character_transformer(
    reg: dict,
) -> None:
    result = train(parse_spec(job(CHAR_TEXT, TRANSFORMER, reg)))
    assert result.status == "completed" and result.step == 4
    assert math.isfinite(result.final_metrics["loss"])


def test_rwp_per_position_cross_entropy_of_a_sequence() -> None:
    logits = torch.randn(3, 5, 7, dtype=torch.float64)
    labels = torch.randint(0, 7, (3, 5))
    expected = F.cross_entropy(logits.reshape(15, 7), labels.reshape(15), reduction="none")
    torch.testing.assert_close(per_sample_ce(logits, labels), expected, rtol=0, atol=0)


def test_grad_norm_penalty_differentiates_through_attention() -> None:
    """The math attention kernel gives the same outputs as the fused one, and a double backward
    that the fused one lacks; the penalty is ‖∇L‖ as a single backward measures it."""
    torch.manual_seed(0)
    info = DataInfo((12,), 20, task="sequence", vocab_size=20)
    model = MODELS.build(MODELS.settings_for(TRANSFORMER), info).double()
    x = torch.randint(0, 20, (2, 12))
    y = torch.randint(0, 20, (2, 12))
    fused = model(x)
    stack = RegularizerStack.build(
        [REGULARIZERS.settings_for({"name": "grad_norm_penalty"})],
        SetupContext(info, total_steps=1, steps_per_epoch=1, batch_size=2, train_size=2, seed=0),
    )
    stack.configure_model(model)
    attention = [m for m in model.modules() if isinstance(m, CausalSelfAttention)]
    assert attention and all(m.twice_differentiable for m in attention)
    logits = model(x)
    torch.testing.assert_close(logits, fused)
    params = [p for p in model.parameters() if p.requires_grad]
    loss = F.cross_entropy(logits.reshape(-1, 20), y.reshape(-1))
    once = torch.autograd.grad(loss, params, retain_graph=True)
    expected = torch.sqrt(sum((g**2).sum() for g in once))
    norm = grad_norm(loss, params)
    torch.testing.assert_close(norm, expected)
    norm.backward()  # the Hessian-vector product through attention
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
