"""Keeping a network trainable: `shrink_perturb` and `continual_backprop` (after-step rules).

Both draw their randomness from a generator of their own, kept in their state, so a resumed job
draws the same numbers an uninterrupted one would.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from trainlib.registries import REGULARIZERS
from trainlib.regularizers.base import Regularizer, RegularizerSettings, SetupContext

_SEED_MAX = 2**63 - 1


def _generator(seed: int, salt: int) -> torch.Generator:
    # a salt per regularizer, so that two of them in one job draw different numbers
    return torch.Generator().manual_seed((seed * 1_000_003 + salt) % _SEED_MAX)


def _draw_seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, _SEED_MAX, (), generator=generator))


# ---------------------------------------------------------------------------------------------
# shrink and perturb


class ShrinkPerturbSettings(RegularizerSettings):
    """θ ← λ_s·θ + p·noise on every parameter, every `every` steps (never after the last)."""

    shrink: float = Field(0.4, ge=0, le=1, description="λ_s: the factor on the weights")
    perturb: float = Field(0.1, ge=0, le=10, description="p: the factor on the noise")
    noise: Literal["init", "gaussian"] = Field(
        "init",
        description="init: a fresh initialisation of the same layers (Ash & Adams); "
        "gaussian: N(0, 1), so p is σ (Dohare et al.'s per-step form, with shrink 1)",
    )
    every: int | None = Field(
        None, ge=1, le=10_000_000, description="steps between applications; None: every epoch"
    )


def fresh_parameters(model: nn.Module, seed: int) -> list[torch.Tensor]:
    """The parameters of a freshly initialised copy (each layer's `reset_parameters`), seeded."""
    fresh = copy.deepcopy(model)
    cuda = sorted({p.device.index or 0 for p in fresh.parameters() if p.device.type == "cuda"})
    # the global generators are forked so that the job's own random stream is untouched
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        for module in fresh.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return [p.detach() for p in fresh.parameters()]


class ShrinkPerturb(Regularizer):
    """Shrink and perturb: θ ← λ_s·θ + p·θ_fresh (Ash & Adams, "On Warm-Starting Neural Network
    Training", 2020), or θ ← λ_s·θ + p·ε, ε ~ N(0, 1) (the per-step form in Dohare et al., "Loss of
    Plasticity in Deep Continual Learning", 2024: shrink 1 with weight decay in the optimizer).

    Ash & Adams apply it when new data arrives; a job has one data set, so it runs every `every`
    steps (default: every epoch), never after the final step. Buffers (BN statistics) and the
    optimizer's state are left as they are. (λ_s, p) = (1, 0) leaves θ unchanged.
    """

    def __init__(self, s: ShrinkPerturbSettings, setup: SetupContext) -> None:
        self.s = s
        self.every = s.every or setup.steps_per_epoch
        self.total_steps = setup.total_steps
        self.generator = _generator(setup.seed, 0x5AD)

    @torch.no_grad()
    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
        done = step + 1
        if done % self.every or done >= self.total_steps:
            return
        self.apply(model)

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        params: list[torch.Tensor] = [p for p in model.parameters() if p.requires_grad]
        seed = _draw_seed(self.generator)
        if self.s.noise == "init":
            owned = {id(p) for p in params}
            noise = [
                f
                for p, f in zip(model.parameters(), fresh_parameters(model, seed), strict=True)
                if id(p) in owned
            ]
        else:
            generators: dict[torch.device, torch.Generator] = {}
            noise = []
            for p in params:
                if p.device not in generators:
                    generators[p.device] = torch.Generator(p.device).manual_seed(seed)
                noise.append(
                    torch.randn(
                        p.shape, generator=generators[p.device], device=p.device, dtype=p.dtype
                    )
                )
        torch._foreach_mul_(params, self.s.shrink)
        torch._foreach_add_(params, noise, alpha=self.s.perturb)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


# ---------------------------------------------------------------------------------------------
# continual backprop

_ACTIVATION_GAIN: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.GELU: "relu",  # the reference maps smooth ReLU-likes (swish, elu) to relu's gain
    nn.SiLU: "relu",
    nn.ELU: "relu",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.LeakyReLU: "leaky_relu",
    nn.SELU: "selu",
}
_PASS_THROUGH = (nn.Dropout, nn.Identity, nn.LayerNorm, nn.RMSNorm, _BatchNorm)


class ContinualBackpropSettings(RegularizerSettings):
    """Generate-and-test after every step: replace the least useful mature hidden units."""

    replacement_rate: float = Field(
        1e-4, ge=0, le=1, description="ρ: fraction of eligible units replaced per step"
    )
    maturity_threshold: int = Field(
        100, ge=0, le=10_000_000, description="m: units younger than this are never replaced"
    )
    decay_rate: float = Field(0.99, ge=0, lt=1, description="η of the running utility")
    utility: Literal["contribution", "adaptable_contribution"] = Field(
        "contribution",
        description="contribution: mean|w_out|·mean|h|; adaptable_contribution: "
        "mean|w_out|·mean|h − ĥ| / mean|w_in|",
    )
    accumulate: bool = Field(
        True, description="carry fractional replacements to later steps (else: random rounding)"
    )
    init: Literal["kaiming", "default"] = Field(
        "kaiming",
        description="new incoming weights ~ U(−b, b): kaiming b = gain·√(3/fan_in), "
        "default b = √(1/fan_in) (torch's Linear init)",
    )


@dataclass
class HiddenLayer:
    """A hidden layer's units: incoming Linear, per-unit modules between, outgoing Linear."""

    fc_in: nn.Linear
    fc_out: nn.Linear
    norms: list[nn.Module]
    bound: float
    utility: torch.Tensor
    mean_act: torch.Tensor
    ages: torch.Tensor
    accumulated: float = 0.0
    features: torch.Tensor | None = field(default=None, repr=False)


def _hidden_layers(model: nn.Module) -> Iterator[tuple[nn.Linear, nn.Linear, list[nn.Module]]]:
    """Linear → only per-unit modules (norm, activation, dropout) → Linear, in a known flow.

    Only a Sequential guarantees that the second Linear reads the first's units (elsewhere the
    registration order of modules says nothing about the data flow).
    """
    # A model may state its data flow itself (the mlp's body, then its separate head).
    flow = getattr(model, "flow", None)
    sequences: list[list[nn.Module]] = [list(flow())] if callable(flow) else []
    sequences += [list(m.children()) for m in model.modules() if isinstance(m, nn.Sequential)]
    seen: set[int] = set()
    for children in sequences:
        for i, first in enumerate(children):
            if not isinstance(first, nn.Linear):
                continue
            between: list[nn.Module] = []
            for nxt in children[i + 1 :]:
                if isinstance(nxt, nn.Linear):
                    if nxt.in_features == first.out_features and id(first) not in seen:
                        seen.add(id(first))
                        yield first, nxt, between
                    break
                if not isinstance(nxt, _PASS_THROUGH + tuple(_ACTIVATION_GAIN)):
                    break
                between.append(nxt)


def _bound(fc_in: nn.Linear, between: list[nn.Module], init: str) -> float:
    fan_in = fc_in.in_features
    if init == "default":
        return math.sqrt(1 / fan_in)
    acts = [m for m in between if type(m) in _ACTIVATION_GAIN]
    if not acts:
        return math.sqrt(3 / fan_in)  # linear units: gain 1
    name = _ACTIVATION_GAIN[type(acts[0])]
    if name == "selu":
        return math.sqrt(3 / fan_in)  # the reference switches to LeCun init for selu
    slope = getattr(acts[0], "negative_slope", None)
    gain = nn.init.calculate_gain(name, slope)  # type: ignore[arg-type]
    return gain * math.sqrt(3 / fan_in)


class ContinualBackprop(Regularizer):
    """Continual backpropagation (Dohare et al., "Loss of Plasticity in Deep Continual Learning",
    2024; the generate-and-test of the authors' `lop/algos/gnt.py`).

    After every step, per hidden unit i (h_i: the input of the next Linear, on the step's first
    training forward): age_i += 1; ĥ ← η ĥ + (1 − η) mean_batch h_i;
    u_i ← η u_i + (1 − η) c_i with c_i = mean_k|w_out[k, i]|·mean_batch|h_i| ("contribution") or
    mean_k|w_out[k, i]|·mean_batch|h_i − ĥ_i/(1 − η^age_i)| / mean_j|w_in[i, j]|
    ("adaptable_contribution"); û_i = u_i / (1 − η^age_i). Of the units with age > m,
    ρ·#eligible (fractions carried over, or rounded at random) with the smallest û are replaced:
    incoming weights ~ U(−b, b), incoming bias 0, outgoing weights 0, next bias
    += w_out[:, i]·ĥ_i/(1 − η^age_i) (the expected output is kept: the reference zeroes ĥ_i
    before this line, which makes it a no-op there), per-unit norm parameters reset (γ = 1, β = 0,
    running mean 0, var 1, as the authors' CBPLinear), u_i = ĥ_i = age_i = 0, and the optimizer's
    per-element state of those rows and columns (momenta, Adam moments) zeroed. Per-tensor step
    counts stay (torch keeps one per tensor; the authors' AdamGnT keeps them per element).
    """

    def __init__(self, s: ContinualBackpropSettings, setup: SetupContext) -> None:
        self.s = s
        self.generator = _generator(setup.seed, 0xCB9)
        self.layers: list[HiddenLayer] = []
        self._handles: list[Any] = []

    def configure_model(self, model: nn.Module) -> None:
        for fc_in, fc_out, between in _hidden_layers(model):
            width = fc_in.out_features
            device = fc_in.weight.device
            norms: list[nn.Module] = [
                m for m in between if isinstance(m, (nn.LayerNorm, nn.RMSNorm, _BatchNorm))
            ]
            layer = HiddenLayer(
                fc_in,
                fc_out,
                norms,
                _bound(fc_in, between, self.s.init),
                utility=torch.zeros(width, device=device, dtype=fc_in.weight.dtype),
                mean_act=torch.zeros(width, device=device, dtype=fc_in.weight.dtype),
                ages=torch.zeros(width, device=device, dtype=torch.long),
            )
            self.layers.append(layer)
            self._handles.append(fc_out.register_forward_pre_hook(self._recorder(layer)))
        if not self.layers:
            raise ValueError(
                "continual_backprop found no hidden layer: it needs Linear → (norm, activation, "
                "dropout) → Linear inside an nn.Sequential, as the mlp model has"
            )

    @staticmethod
    def _recorder(layer: HiddenLayer) -> Any:
        # a closure, not a bound method: deep copies of the model (EMA, SWA) share it, and the
        # identity check keeps their forwards out of this layer's record
        def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            if module is layer.fc_out and module.training and layer.features is None:
                layer.features = args[0].detach()

        return record

    @torch.no_grad()
    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
        for layer in self.layers:
            features, layer.features = layer.features, None
            if features is None or self.s.replacement_rate == 0:
                continue  # ρ = 0 is plain backprop; the reference skips the bookkeeping too
            h = features.reshape(-1, features.shape[-1]).to(layer.utility.dtype)
            self._update_utility(layer, h)
            units = self._units_to_replace(layer)
            if units.numel():
                self._replace(layer, units, optimizer)

    def _update_utility(self, layer: HiddenLayer, h: torch.Tensor) -> None:
        eta = self.s.decay_rate
        layer.ages += 1
        correction = 1 - eta ** layer.ages.to(layer.utility.dtype)
        layer.mean_act.mul_(eta).add_(h.mean(0), alpha=1 - eta)
        w_out = layer.fc_out.weight.detach().abs().mean(0).to(h.dtype)
        if self.s.utility == "contribution":
            contribution = w_out * h.abs().mean(0)
        else:
            w_in = layer.fc_in.weight.detach().abs().mean(1).to(h.dtype)
            contribution = w_out * (h - layer.mean_act / correction).abs().mean(0) / w_in
        layer.utility.mul_(eta).add_(contribution, alpha=1 - eta)

    def _units_to_replace(self, layer: HiddenLayer) -> torch.Tensor:
        eligible = torch.nonzero(layer.ages > self.s.maturity_threshold).flatten()
        if eligible.numel() == 0:
            return eligible
        amount = self.s.replacement_rate * eligible.numel()
        if self.s.accumulate:
            layer.accumulated += amount
            count = int(layer.accumulated)
            layer.accumulated -= count
        else:
            if amount < 1 and float(torch.rand((), generator=self.generator)) <= amount:
                amount = 1
            count = int(amount)
        if count == 0:
            return eligible[:0]
        corrected = layer.utility / (1 - self.s.decay_rate ** layer.ages.to(layer.utility.dtype))
        worst = torch.topk(-corrected[eligible], count).indices
        return eligible[worst]

    def _replace(
        self, layer: HiddenLayer, units: torch.Tensor, optimizer: torch.optim.Optimizer
    ) -> None:
        eta = self.s.decay_rate
        w_in, w_out = layer.fc_in.weight, layer.fc_out.weight
        expected = layer.mean_act[units] / (1 - eta ** layer.ages[units].to(layer.mean_act.dtype))
        if layer.fc_out.bias is not None:
            layer.fc_out.bias.add_(w_out[:, units] @ expected.to(w_out.dtype))
        fresh = torch.empty((units.numel(), w_in.shape[1]), dtype=w_in.dtype)
        fresh.uniform_(-layer.bound, layer.bound, generator=self.generator)
        w_in[units] = fresh.to(w_in.device)
        w_out[:, units] = 0
        if layer.fc_in.bias is not None:
            layer.fc_in.bias[units] = 0
        for norm in layer.norms:
            _reset_units(norm, units)
        layer.utility[units] = 0
        layer.mean_act[units] = 0
        layer.ages[units] = 0
        state = getattr(optimizer, "state", {})
        _zero_state(state, w_in, units, dim=0)
        _zero_state(state, w_out, units, dim=1)
        if layer.fc_in.bias is not None:
            _zero_state(state, layer.fc_in.bias, units, dim=0)
        for norm in layer.norms:
            for p in norm.parameters(recurse=False):
                _zero_state(state, p, units, dim=0)

    def state_dict(self) -> dict[str, Any]:
        return {
            "utility": [layer.utility.clone() for layer in self.layers],
            "mean_act": [layer.mean_act.clone() for layer in self.layers],
            "ages": [layer.ages.clone() for layer in self.layers],
            "accumulated": [layer.accumulated for layer in self.layers],
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["ages"]) != len(self.layers):
            raise ValueError(
                f"continual_backprop state has {len(state['ages'])} layers, the model "
                f"{len(self.layers)}"
            )
        for i, layer in enumerate(self.layers):
            layer.utility.copy_(state["utility"][i])
            layer.mean_act.copy_(state["mean_act"][i])
            layer.ages.copy_(state["ages"][i])
            layer.accumulated = float(state["accumulated"][i])
        self.generator.set_state(state["generator"])


def _reset_units(norm: nn.Module, units: torch.Tensor) -> None:
    """γ = 1, β = 0 (and running mean 0, var 1) for the replaced units of a per-unit norm."""
    weight = getattr(norm, "weight", None)
    bias = getattr(norm, "bias", None)
    if isinstance(weight, torch.Tensor):
        weight[units] = 1
    if isinstance(bias, torch.Tensor):
        bias[units] = 0
    if isinstance(norm, _BatchNorm) and norm.running_mean is not None:
        norm.running_mean[units] = 0
        assert norm.running_var is not None
        norm.running_var[units] = 1


def _zero_state(state: Any, param: torch.Tensor, units: torch.Tensor, dim: int) -> None:
    """Zero the rows (dim 0) or columns (dim 1) of every per-element state tensor of `param`."""
    entry = state.get(param) if hasattr(state, "get") else None
    if not entry:
        return
    for value in entry.values():
        if isinstance(value, torch.Tensor) and value.shape == param.shape:
            value.index_fill_(dim, units.to(value.device), 0)


@REGULARIZERS.register(
    "shrink_perturb",
    settings=ShrinkPerturbSettings,
    summary="shrink and perturb: θ ← λ_s·θ + p·(fresh init or Gaussian noise), periodically",
    paper="On Warm-Starting Neural Network Training (Ash & Adams, 2020)",
)
def build_shrink_perturb(s: ShrinkPerturbSettings, setup: SetupContext) -> Regularizer:
    return ShrinkPerturb(s, setup)


@REGULARIZERS.register(
    "continual_backprop",
    settings=ContinualBackpropSettings,
    summary="continual backprop: reinitialise the least useful mature hidden units every step",
    paper="Loss of Plasticity in Deep Continual Learning (Dohare et al., 2024)",
)
def build_continual_backprop(s: ContinualBackpropSettings, setup: SetupContext) -> Regularizer:
    return ContinualBackprop(s, setup)
