"""Reparametrizations of layer weights, registered with `torch.nn.utils.parametrize` in
`configure_model` (before the optimizer is built, so it sees the new parameters):
`spectral_norm`, `weight_norm`, `weight_standardization` (plain or NF-Nets scaled),
`sigma_reparam`, `weight_compander` (function NOT verified) and `lawn`.

Layers are chosen among every `nn.Linear` and convolution of the model; a `layers` list of
fnmatch patterns over module names (`net.0`, `net.*`, `*.conv1`) narrows the choice. A weight
matrix means the weight with its output dimension first, flattened to `(out, fan_in)`.
A model with a parametrized weight stores it as `<layer>.parametrizations.weight.original`
(plus the parametrization's own parameters and buffers) in its state dict.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd
from torch.nn.utils import parametrizations, parametrize

from trainlib.registries import REGULARIZERS
from trainlib.regularizers.base import Regularizer, RegularizerSettings, SetupContext

Pattern = Annotated[str, Field(min_length=1, max_length=200)]
_LAYER_TYPES = (nn.Linear, _ConvNd)
_NORM_TYPES = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
    nn.LocalResponseNorm,
)


class LayerChoice(RegularizerSettings):
    layers: list[Pattern] | None = Field(
        None,
        max_length=64,
        description="fnmatch patterns over module names (e.g. 'net.0', 'net.*'); "
        "None: every Linear and Conv layer",
    )


def output_dim(module: nn.Module) -> int:
    """Transposed convolutions store their weight as (in, out, ...)."""
    return 1 if isinstance(module, _ConvTransposeNd) else 0


def as_matrix(weight: torch.Tensor, out_dim: int) -> torch.Tensor:
    return weight.movedim(out_dim, 0).flatten(1)


def from_matrix(matrix: torch.Tensor, like: torch.Tensor, out_dim: int) -> torch.Tensor:
    return matrix.reshape(like.movedim(out_dim, 0).shape).movedim(0, out_dim)


def weight_of(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight


def select_layers(
    model: nn.Module, patterns: list[str] | None, who: str
) -> list[tuple[str, nn.Module]]:
    """The Linear/Conv layers whose names match one of the patterns (all of them for None)."""
    layers: list[tuple[str, nn.Module]] = [
        (n, m) for n, m in model.named_modules() if isinstance(m, _LAYER_TYPES)
    ]
    chosen = layers
    if patterns is not None:
        chosen = [(n, m) for n, m in layers if any(fnmatchcase(n, p) for p in patterns)]
    if not chosen:
        names = ", ".join(n for n, _ in layers) or "(none)"
        raise ValueError(f"{who}: no Linear/Conv layer matches {patterns}; the model has {names}")
    return chosen


class Reparametrization(Regularizer):
    """Registers `make(module)` on the weight of every chosen layer."""

    def __init__(self, who: str, patterns: list[str] | None) -> None:
        self.who = who
        self.patterns = patterns
        self.layers: list[tuple[str, nn.Module]] = []

    def parametrization(self, module: nn.Module) -> nn.Module:
        raise NotImplementedError

    def configure_model(self, model: nn.Module) -> None:
        self.layers = select_layers(model, self.patterns, self.who)
        for _, module in self.layers:
            parametrize.register_parametrization(module, "weight", self.parametrization(module))


# --- spectral_norm --------------------------------------------------------------------------------


class SpectralNormSettings(LayerChoice):
    n_power_iterations: int = Field(
        1, ge=1, le=100, description="power-iteration steps per training forward"
    )
    eps: float = Field(1e-12, gt=0, le=1e-3, description="ε when normalising u and v")


class SpectralNorm(Reparametrization):
    """W_SN = W / σ(W), σ by power iteration on persistent u, v (torch's parametrization).

    In training mode each forward runs `n_power_iterations` of v ← normalize(Wᵀu),
    u ← normalize(Wv), then σ = uᵀWv with u, v constant (the gradient flows through W in both the
    numerator and σ); eval mode reuses the stored u, v. Spectral Normalization for Generative
    Adversarial Networks (Miyato, Kataoka, Koyama, Yoshida, 2018).
    """

    def __init__(self, s: SpectralNormSettings) -> None:
        super().__init__("spectral_norm", s.layers)
        self.s = s

    def configure_model(self, model: nn.Module) -> None:
        # torch's own parametrization (dim=None picks 1 for transposed convolutions)
        self.layers = select_layers(model, self.patterns, self.who)
        for _, module in self.layers:
            parametrizations.spectral_norm(
                module, n_power_iterations=self.s.n_power_iterations, eps=self.s.eps
            )


@REGULARIZERS.register(
    "spectral_norm",
    settings=SpectralNormSettings,
    summary="spectral normalisation W/σ(W) of Linear/Conv weights (power iteration)",
    paper="Spectral Normalization for Generative Adversarial Networks (Miyato et al., 2018)",
)
def build_spectral_norm(s: SpectralNormSettings, setup: SetupContext) -> Regularizer:
    return SpectralNorm(s)


# --- weight_norm ----------------------------------------------------------------------------------


class WeightNormSettings(LayerChoice):
    per_output: bool = Field(
        True, description="one gain g per output unit (else one norm for the whole tensor)"
    )


class WeightNorm(Reparametrization):
    """w = g · v / ‖v‖ (torch's parametrization); g starts at ‖v‖, so the layer is unchanged.

    Norms are taken over every dimension but the output one (or over the whole tensor).
    The paper's data-dependent initialisation is not applied. Weight Normalization: A Simple
    Reparameterization to Accelerate Training of Deep Neural Networks (Salimans, Kingma, 2016).
    """

    def __init__(self, s: WeightNormSettings) -> None:
        super().__init__("weight_norm", s.layers)
        self.s = s

    def configure_model(self, model: nn.Module) -> None:
        self.layers = select_layers(model, self.patterns, self.who)
        for _, module in self.layers:
            # dim=None (one norm for the whole tensor) works, though torch's stub says int
            dim = output_dim(module) if self.s.per_output else None
            parametrizations.weight_norm(module, dim=dim)  # type: ignore[arg-type]


@REGULARIZERS.register(
    "weight_norm",
    settings=WeightNormSettings,
    summary="weight normalisation w = g·v/‖v‖ of Linear/Conv weights",
    paper="Weight Normalization: A Simple Reparameterization to Accelerate Training of Deep "
    "Neural Networks (Salimans & Kingma, 2016)",
)
def build_weight_norm(s: WeightNormSettings, setup: SetupContext) -> Regularizer:
    return WeightNorm(s)


# --- weight_standardization -----------------------------------------------------------------------


class WeightStandardizationSettings(LayerChoice):
    scaled: bool = Field(
        False, description="NF-Nets scaled WS: gain·(W−μ)/sqrt(max(N·Var, ε)), learnable gain"
    )
    eps: float | None = Field(
        None, gt=0, le=1, description="ε; None: 1e-5 (added to the std), 1e-4 when scaled"
    )


class Standardize(nn.Module):
    """Per output unit over its fan-in (see WeightStandardization)."""

    def __init__(self, out_dim: int, out_features: int, scaled: bool, eps: float) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.scaled = scaled
        self.eps = eps
        self.gain = nn.Parameter(torch.ones(out_features)) if scaled else None

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        w = as_matrix(weight, self.out_dim)
        mean = w.mean(1, keepdim=True)
        if self.gain is None:
            # the authors' snippet: unbiased std, ε added to the std
            out = (w - mean) / (w.std(1, keepdim=True) + self.eps)
        else:
            var = w.var(1, correction=0, keepdim=True)
            scale = torch.rsqrt(torch.clamp(var * w.shape[1], min=self.eps)) * self.gain[:, None]
            out = w * scale - mean * scale  # nfnets/base.py WSConv2D, operation for operation
        return from_matrix(out, weight, self.out_dim)


class WeightStandardization(Reparametrization):
    """Per output unit i, over its fan-in (N inputs):

    plain:  Ŵ_i = (W_i − mean(W_i)) / (std(W_i) + ε), unbiased std, ε = 1e-5, no gain
            (the authors' PyTorch snippet; Micro-Batch Training with Batch-Channel Normalization
            and Weight Standardization, Qiao et al., 2019);
    scaled: Ŵ_i = g_i · (W_i − mean(W_i)) / sqrt(max(N·Var(W_i), ε)), population variance,
            ε = 1e-4, g a learnable per-unit gain starting at 1 (NF-Nets `WSConv2D`;
            Characterizing signal propagation to close the performance gap in unnormalized
            ResNets, Brock, De, Smith, 2021). The NF-Nets activation gains γ_g belong to the
            architecture and are not applied here.
    """

    def __init__(self, s: WeightStandardizationSettings) -> None:
        super().__init__("weight_standardization", s.layers)
        self.s = s
        self.eps = s.eps if s.eps is not None else (1e-4 if s.scaled else 1e-5)

    def parametrization(self, module: nn.Module) -> nn.Module:
        out_dim = output_dim(module)
        weight = weight_of(module)
        fan_in = weight.numel() // weight.shape[out_dim]
        if fan_in < 2 and not self.s.scaled:
            raise ValueError(f"{self.who}: a fan-in of {fan_in} has no standard deviation")
        standardize = Standardize(out_dim, weight.shape[out_dim], self.s.scaled, self.eps)
        return standardize.to(device=weight.device, dtype=weight.dtype)


@REGULARIZERS.register(
    "weight_standardization",
    settings=WeightStandardizationSettings,
    summary="weight standardisation per output unit (scaled: NF-Nets variant with a gain)",
    paper="Micro-Batch Training with Batch-Channel Normalization and Weight Standardization "
    "(Qiao et al., 2019); scaled: Characterizing signal propagation to close the performance "
    "gap in unnormalized ResNets (Brock et al., 2021)",
)
def build_weight_standardization(
    s: WeightStandardizationSettings, setup: SetupContext
) -> Regularizer:
    return WeightStandardization(s)


# --- sigma_reparam --------------------------------------------------------------------------------


class SigmaReparamSettings(LayerChoice):
    gamma_init: Literal["sigma", "one"] = Field(
        "sigma",
        description="γ at the start: σ(W₀) (PyTorch vision code: the layer is unchanged) or 1 "
        "(JAX speech code)",
    )


class SigmaReparamWeight(nn.Module):
    """Ŵ = (γ / σ(W)) · W, as `SpectralNormedWeight` × `sigma` of apple/ml-sigma-reparam."""

    u: torch.Tensor
    sigma: torch.Tensor

    def __init__(self, weight: torch.Tensor, out_dim: int, gamma_one: bool) -> None:
        super().__init__()
        self.out_dim = out_dim
        with torch.no_grad():
            _, s, vh = torch.linalg.svd(as_matrix(weight, out_dim), full_matrices=False)
        # u starts at the exact top right-singular vector
        self.register_buffer("u", vh[0].clone())
        self.register_buffer("sigma", s[0].clone())
        self.gamma = nn.Parameter(torch.ones_like(s[0]) if gamma_one else s[0].clone())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        w = as_matrix(weight, self.out_dim)
        with torch.no_grad():
            # one iteration on every forward; u (and the tracked σ) move only in training
            v = F.normalize(w.mv(self.u), dim=0)
            u = F.normalize(w.t().mv(v), dim=0)
            if self.training:
                self.u.copy_(u)
        sigma = torch.einsum("c,cd,d->", v, w, u)
        if self.training:
            self.sigma.copy_(sigma.detach())
        return weight * (self.gamma / sigma)


class SigmaReparam(Reparametrization):
    """σReparam: Ŵ = (γ / σ(W)) · W with a learnable scalar γ per layer.

    σ(W) by one power-iteration step per forward from a persistent u (initialised from an SVD):
    v = normalize(Wu), u = normalize(Wᵀv) without gradient, σ = vᵀWu with gradient through W.
    Stabilizing Transformer Training by Preventing Attention Entropy Collapse (Zhai et al., 2023).
    """

    def __init__(self, s: SigmaReparamSettings) -> None:
        super().__init__("sigma_reparam", s.layers)
        self.s = s

    def parametrization(self, module: nn.Module) -> nn.Module:
        weight = weight_of(module).detach()
        return SigmaReparamWeight(weight, output_dim(module), self.s.gamma_init == "one")


@REGULARIZERS.register(
    "sigma_reparam",
    settings=SigmaReparamSettings,
    summary="σReparam: (γ/σ(W))·W with a learnable scalar γ per layer",
    paper="Stabilizing Transformer Training by Preventing Attention Entropy Collapse "
    "(Zhai et al., 2023)",
)
def build_sigma_reparam(s: SigmaReparamSettings, setup: SetupContext) -> Regularizer:
    return SigmaReparam(s)


# --- weight_compander -----------------------------------------------------------------------------


class WeightCompanderSettings(LayerChoice):
    """NOT VERIFIED against the paper: every field but `learnable` is required, no defaults."""

    function: Literal["tanh", "arctan"] = Field(
        description="shape of the odd, bounded, increasing compander f"
    )
    bound: float = Field(gt=0, le=100, description="sup |f(w)|: the magnitude cap")
    slope: float = Field(gt=0, le=1000, description="f'(0); > 1 expands weights near zero")
    learnable: bool = Field(False, description="learn bound and slope per layer (positive)")


def compander(kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A unit-bound, unit-slope odd squashing function."""
    if kind == "tanh":
        return torch.tanh
    return lambda t: torch.atan(t * (math.pi / 2)) * (2 / math.pi)


class CompanderWeight(nn.Module):
    """ŵ = bound · g(slope · w / bound), g odd with g'(0) = 1 and sup g = 1."""

    log_bound: torch.Tensor
    log_slope: torch.Tensor

    def __init__(self, kind: str, bound: float, slope: float, learnable: bool) -> None:
        super().__init__()
        self.squash = compander(kind)
        # log-parametrised when learned, so bound and slope stay positive
        log_bound = torch.tensor(math.log(bound), dtype=torch.float64)  # cast with the layer
        log_slope = torch.tensor(math.log(slope), dtype=torch.float64)
        if learnable:
            self.log_bound = nn.Parameter(log_bound)
            self.log_slope = nn.Parameter(log_slope)
        else:
            self.register_buffer("log_bound", log_bound)
            self.register_buffer("log_slope", log_slope)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        bound = self.log_bound.exp()
        return bound * self.squash(weight * (self.log_slope.exp() / bound))


class WeightCompander(Reparametrization):
    """ŵ = f(w) elementwise, f(w) = bound · g(slope · w / bound), g = tanh or (2/π)·atan(π t/2).

    NOT VERIFIED. What the abstract confirms: each weight is replaced by a fixed nonlinear function
    of itself that caps the effective weight's magnitude and pushes weights away from zero (a
    steep f near 0 amplifies the gradient reaching small, "dead" weights); its hyperparameters
    can be learned. The paper's own function (its Section III) and its defaults could not be
    read, so the family above is ours, chosen only to have those properties (odd, increasing,
    |f| < bound, f'(0) = slope); every hyperparameter must be given. Weight Compander: A Simple
    Weight Reparameterization for Regularization (Cakaj, Mehnert, Yang, 2023).
    """

    def __init__(self, s: WeightCompanderSettings) -> None:
        super().__init__("weight_compander", s.layers)
        self.s = s

    def parametrization(self, module: nn.Module) -> nn.Module:
        weight = weight_of(module)
        made = CompanderWeight(self.s.function, self.s.bound, self.s.slope, self.s.learnable)
        return made.to(device=weight.device, dtype=weight.dtype)


@REGULARIZERS.register(
    "weight_compander",
    settings=WeightCompanderSettings,
    summary="elementwise bounded, zero-expanding weight reparametrisation (UNVERIFIED function; "
    "no defaults)",
    paper="Weight Compander: A Simple Weight Reparameterization for Regularization "
    "(Cakaj et al., 2023)",
)
def build_weight_compander(s: WeightCompanderSettings, setup: SetupContext) -> Regularizer:
    return WeightCompander(s)


# --- lawn -----------------------------------------------------------------------------------------


class LawnSettings(LayerChoice):
    layers: list[Pattern] | None = Field(
        None,
        max_length=64,
        description="fnmatch patterns over module names; None: the final homogeneous "
        "sub-network, i.e. the Linear/Conv layers after the last normalisation layer (every "
        "layer when the model has none)",
    )
    free_fraction: float = Field(
        0.1, ge=0, lt=1, description="share of the steps trained freely before the constraint"
    )
    free_steps: int | None = Field(None, ge=0, description="free steps (overrides free_fraction)")


class FixedNorm(nn.Module):
    """W = c · V / ‖V‖ once c (the `radius` buffer) is set; the identity while c = 0."""

    radius: torch.Tensor

    def __init__(self, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        self.register_buffer("radius", torch.zeros((), dtype=dtype, device=device))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # no host sync: the phase is read from the buffer, not from Python
        norm = torch.linalg.vector_norm(weight).clamp_min(torch.finfo(weight.dtype).tiny)
        scale = torch.where(self.radius > 0, self.radius / norm, torch.ones_like(norm))
        return weight * scale


class Lawn(Reparametrization):
    """Logit Attenuating Weight Normalization: free training, then fixed weight norms.

    Phase 1 (the first `free_steps`, or `free_fraction` of the run): ordinary training.
    Phase 2: each chosen weight W_l keeps the norm c_l = ‖W_l‖ it had at the switch. The weight is
    parametrised as c_l · V_l / ‖V_l‖, whose Jacobian at ‖V_l‖ = c_l is the projection that
    removes the gradient's radial component; after every optimizer step V_l ← c_l · V_l / ‖V_l‖.
    For SGD this is exactly "project the gradient, step, renormalise". Weight decay on V_l is
    undone by the renormalisation (up to a 1/(1 − ηλ) factor on the step). c_l and the phase live
    in the model's state dict (`radius` buffers), so checkpoints carry them.

    From memory beyond the abstract (which confirms: constrain the weight norms of the layers
    in the final homogeneous sub-network, on top of any optimizer): the two phases, the per-layer
    (whole tensor) norm, and the default switch point. Logit Attenuating Weight Normalization
    (Gupta, Ramanath, Shi, Ramachandran, Zhou, Zhou, Keerthi, 2021).
    """

    def __init__(self, s: LawnSettings, total_steps: int) -> None:
        super().__init__("lawn", s.layers)
        self.s = s
        self.free_steps = (
            s.free_steps if s.free_steps is not None else round(s.free_fraction * total_steps)
        )
        self.norms: list[FixedNorm] = []

    def configure_model(self, model: nn.Module) -> None:
        if self.patterns is None:
            self.layers = homogeneous_tail(model)
        else:
            self.layers = select_layers(model, self.patterns, self.who)
        self.norms = []
        for name, module in self.layers:
            if parametrize.is_parametrized(module, "weight"):
                raise ValueError(
                    f"lawn: {name}.weight is already reparametrised; list lawn before the others"
                )
            weight = weight_of(module)
            fixed = FixedNorm(weight.dtype, weight.device)
            parametrize.register_parametrization(module, "weight", fixed)
            self.norms.append(fixed)
        if self.free_steps == 0:
            self._constrain()

    def _originals(self) -> list[torch.Tensor]:
        originals = []
        for _, module in self.layers:
            container = module.parametrizations
            assert isinstance(container, nn.ModuleDict)
            original = container["weight"].original
            assert isinstance(original, torch.Tensor)
            originals.append(original)
        return originals

    @torch.no_grad()
    def _constrain(self) -> None:
        for fixed, v in zip(self.norms, self._originals(), strict=True):
            fixed.radius.copy_(torch.linalg.vector_norm(v))

    @torch.no_grad()
    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
        done = step + 1  # optimizer steps taken so far
        if done < self.free_steps:
            return
        if done == self.free_steps:
            self._constrain()
            return
        for fixed, v in zip(self.norms, self._originals(), strict=True):
            v.mul_(fixed.radius / torch.linalg.vector_norm(v))


def homogeneous_tail(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear/Conv layers registered after the last normalisation layer (all if none)."""
    modules = list(model.named_modules())
    last_norm = max(
        (i for i, (_, m) in enumerate(modules) if isinstance(m, _NORM_TYPES)), default=-1
    )
    tail: list[tuple[str, nn.Module]] = [
        (n, m) for n, m in modules[last_norm + 1 :] if isinstance(m, _LAYER_TYPES)
    ]
    if not tail:
        raise ValueError("lawn: no Linear/Conv layer after the last normalisation layer")
    return tail


@REGULARIZERS.register(
    "lawn",
    settings=LawnSettings,
    summary="LAWN: free training, then the final homogeneous layers keep their weight norms",
    paper="Logit Attenuating Weight Normalization (Gupta et al., 2021)",
)
def build_lawn(s: LawnSettings, setup: SetupContext) -> Regularizer:
    return Lawn(s, setup.total_steps)
