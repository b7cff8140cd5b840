"""Models: shapes, determinism, transformer variants, the Pre-LN -> Pre-RMSNorm conversion."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from trainlib import CollectingSink, parse_spec, train
from trainlib.components.models_convert import convert_pre_ln_to_pre_rmsnorm
from trainlib.components.models_transformer import Transformer
from trainlib.components.norms_feature import RMSNorm
from trainlib.data import DataInfo
from trainlib.registries import MODELS, NORMS

CPU = torch.device("cpu")
TEXT = DataInfo((12,), 13, task="sequence", vocab_size=13)
TOKENS = DataInfo((12,), 5, vocab_size=13)
SMALL_TF = {"name": "transformer", "d_model": 16, "n_heads": 2, "max_len": 12}

DIGITS = {"name": "digits", "batch_size": 32}
RUNS: dict[str, dict[str, Any]] = {
    "mlp": {"data": DIGITS, "model": {"name": "mlp", "hidden": [32, 32], "residual": "rezero"}},
    "cnn": {
        "data": {**DIGITS, "flatten": False},
        "model": {"name": "cnn", "widths": [8, 16], "blocks": [1, 1]},
    },
    "transformer": {
        "data": {"name": "char_text", "batch_size": 16, "context_length": 16},
        "model": {**SMALL_TF, "max_len": 16},
    },
}


def first_losses(run: dict[str, Any], seed: int, steps: int = 10) -> list[float]:
    spec = parse_spec(
        {
            "name": "models-test",
            "seed": seed,
            **run,
            "optimizer": {"name": "adamw", "lr": 3e-3},
            "train": {"steps": steps, "log_every": 1, "eval_every": steps},
        }
    )
    sink = CollectingSink()
    train(spec, sink, device=CPU)
    return [v for _, v in sink.series("loss")]


@pytest.mark.parametrize("model", sorted(RUNS))
def test_same_seed_same_first_losses_and_different_seeds_differ(model: str) -> None:
    first = first_losses(RUNS[model], seed=0)
    assert len(first) == 10 and all(math.isfinite(v) for v in first)
    assert first_losses(RUNS[model], seed=0) == first
    assert first_losses(RUNS[model], seed=1) != first


@pytest.mark.parametrize(
    ("model", "norm"),
    [("mlp", n) for n in NORMS.names()]
    + [("cnn", n) for n in ["groupnorm", "batch_channel_norm", "online_norm", "none"]]
    + [("transformer", n) for n in ["rmsnorm", "power_norm", "unified_norm", "crmsnorm"]],
)
def test_models_train_a_few_steps_with_each_norm(model: str, norm: str) -> None:
    run = RUNS[model]
    losses = first_losses({**run, "model": {**run["model"], "norm": norm}}, seed=0, steps=5)
    assert len(losses) == 5 and all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("residual", ["plain", "rezero", "fixup"])
@pytest.mark.parametrize("position", ["pre", "post", "peri"])
def test_transformer_variants_train_without_nan(residual: str, position: str) -> None:
    run = RUNS["transformer"]
    model = {**run["model"], "residual": residual, "norm_position": position, "drop_path": 0.1}
    losses = first_losses({**run, "model": model}, seed=0, steps=3)
    assert all(math.isfinite(v) for v in losses)


def test_output_shapes() -> None:
    assert MODELS.build({"name": "mlp"}, DataInfo((64,), 10))(torch.randn(3, 64)).shape == (3, 10)
    ids = torch.randint(0, 13, (3, 12))
    assert MODELS.build({"name": "mlp"}, TOKENS)(ids).shape == (3, 5)  # one-hot
    assert MODELS.build({"name": "mlp", "embed_dim": 4}, TOKENS)(ids).shape == (3, 5)
    for shape in [(1, 8, 8), (3, 32, 32)]:
        cnn = MODELS.build(
            {"name": "cnn", "widths": [4, 8, 8], "blocks": [1, 1, 1]}, DataInfo(shape, 7)
        )
        assert cnn(torch.randn(2, *shape)).shape == (2, 7)
    flat = MODELS.build({"name": "cnn", "widths": [4], "blocks": [1]}, DataInfo((64,), 10))
    assert flat(torch.randn(2, 64)).shape == (2, 10)  # 64 features read as 1x8x8
    assert MODELS.build(SMALL_TF, TEXT)(ids).shape == (3, 12, 13)
    assert MODELS.build(SMALL_TF, TOKENS)(ids).shape == (3, 5)  # from the last position


def test_mlp_keeps_the_plain_stack_for_existing_specs() -> None:
    mlp = MODELS.build(
        {"name": "mlp", "hidden": [32, 32], "norm": "layernorm"}, DataInfo((64,), 10)
    )
    kinds = [type(m) for m in mlp.body]
    assert kinds == [nn.Linear, nn.Identity, nn.LayerNorm, nn.ReLU, nn.Dropout] * 2


def test_models_reject_what_they_cannot_handle() -> None:
    with pytest.raises(ValueError, match="sequence"):
        MODELS.build({"name": "mlp"}, TEXT)
    with pytest.raises(ValueError, match="token ids"):
        MODELS.build(SMALL_TF, DataInfo((64,), 10))
    with pytest.raises(ValueError, match="tied_embeddings"):
        MODELS.build({**SMALL_TF, "tied_embeddings": True}, TOKENS)
    with pytest.raises(ValidationError):
        MODELS.settings_for({"name": "cnn", "widths": [4, 8], "blocks": [1]})
    with pytest.raises(ValidationError):
        MODELS.settings_for({**SMALL_TF, "n_heads": 3})


@pytest.mark.parametrize("position", ["pre", "post", "peri"])
def test_transformer_is_causal(position: str) -> None:
    torch.manual_seed(0)
    model = MODELS.build({**SMALL_TF, "norm_position": position}, TEXT).eval()
    ids = torch.randint(0, 13, (2, 12))
    changed = ids.clone()
    changed[:, 7] = (ids[:, 7] + 1) % 13
    a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_tied_embeddings_share_one_tensor() -> None:
    model = MODELS.build({**SMALL_TF, "tied_embeddings": True}, TEXT)
    assert model.head.weight is model.stem.weight


def test_norm_positions_place_their_norms() -> None:
    def count(position: str) -> int:
        model = MODELS.build({**SMALL_TF, "norm_position": position}, TEXT)
        return sum(isinstance(m, nn.LayerNorm) for m in model.modules())

    layers = 2  # two sublayers each
    assert count("pre") == 2 * layers + 1  # one per sublayer, and the final norm
    assert count("post") == 2 * layers
    assert count("peri") == 4 * layers + 1  # input and output of each sublayer, and the final


def test_peri_ln_increments_are_zero_mean_per_token() -> None:
    torch.manual_seed(0)
    model = MODELS.build({**SMALL_TF, "norm_position": "peri"}, TEXT).eval()
    h = torch.randn(2, 12, 16)
    for block in model.blocks:
        increment = block(h) - h  # Norm_out(F(Norm_in(h))), a LayerNorm output (gain 1, bias 0)
        torch.testing.assert_close(increment.mean(-1), torch.zeros(2, 12), atol=1e-5, rtol=0)
        torch.testing.assert_close(increment.pow(2).mean(-1), torch.ones(2, 12), atol=1e-3, rtol=0)
        h = block(h)


def _with_queries_scaled(model: nn.Module, factor: float) -> None:
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "qkv"):
                d = module.qkv.in_features
                module.qkv.weight[:d] *= factor
                module.qkv.bias[:d] *= factor


def test_qk_norm_variants_differ_and_normalised_ones_ignore_query_scale() -> None:
    ids = torch.randint(0, 13, (2, 12))
    outputs = {}
    for qk in ["none", "layernorm", "l2"]:
        torch.manual_seed(0)
        model = MODELS.build({**SMALL_TF, "qk_norm": qk}, TEXT).eval()
        outputs[qk] = model(ids)
        _with_queries_scaled(model, 3.0)
        rescaled = model(ids)
        if qk == "none":
            assert not torch.allclose(rescaled, outputs[qk], atol=1e-4)
        else:  # a normalised query does not see its own scale
            torch.testing.assert_close(rescaled, outputs[qk], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(outputs["none"], outputs["layernorm"])
    assert not torch.allclose(outputs["none"], outputs["l2"])
    assert not torch.allclose(outputs["layernorm"], outputs["l2"])


def test_qk_l2_scale_starts_at_log2_of_l_squared_minus_l() -> None:
    model = MODELS.build({**SMALL_TF, "qk_norm": "l2"}, TEXT)
    scales = [p.item() for n, p in model.named_parameters() if n.endswith("qk_scale")]
    assert scales == pytest.approx([math.log2(12**2 - 12)] * 2)
    custom = MODELS.build({**SMALL_TF, "qk_norm": "l2", "qk_scale_init": 5.0}, TEXT)
    assert [p.item() for n, p in custom.named_parameters() if n.endswith("qk_scale")] == [5.0, 5.0]


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("residual", ["plain", "rezero"])
def test_pre_ln_and_converted_pre_rmsnorm_give_the_same_outputs(tied: bool, residual: str) -> None:
    torch.manual_seed(0)
    settings = {**SMALL_TF, "tied_embeddings": tied, "residual": residual, "n_layers": 3}
    model = MODELS.build(settings, TEXT).double().eval()
    assert isinstance(model, Transformer)
    with torch.no_grad():  # LN gains and biases away from (1, 0), rezero gates away from 0
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_()
        for name, p in model.named_parameters():
            if name.endswith("gate"):
                p.fill_(0.7)
    converted = convert_pre_ln_to_pre_rmsnorm(model)
    assert not any(isinstance(m, nn.LayerNorm) for m in converted.modules())
    assert sum(isinstance(m, RMSNorm) and m.weight is None for m in converted.modules()) == 7
    torch.testing.assert_close(converted.stem.weight.mean(-1), torch.zeros(13, dtype=torch.float64))
    ids = torch.randint(0, 13, (4, 12))
    torch.testing.assert_close(converted(ids), model(ids), rtol=1e-10, atol=1e-10)
    assert not torch.allclose(model.stem.weight, converted.stem.weight)  # the original is kept


def test_conversion_needs_pre_ln() -> None:
    post = MODELS.build({**SMALL_TF, "norm_position": "post"}, TEXT)
    rms = MODELS.build({**SMALL_TF, "norm": "rmsnorm"}, TEXT)
    for model in [post, rms]:
        assert isinstance(model, Transformer)
        with pytest.raises(ValueError):
            convert_pre_ln_to_pre_rmsnorm(model)


def test_components_command_lists_models_and_norms() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "trainlib", "components", "--json"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    listed = json.loads(out)
    names = {(kind, e["name"]) for kind, entries in listed.items() for e in entries}
    assert {("model", m) for m in ["mlp", "cnn", "transformer"]} <= names
    assert {("norm", n) for n in NORMS.names()} <= names
