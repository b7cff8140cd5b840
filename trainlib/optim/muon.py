"""`muon`: Muon, MomentUm Orthogonalized by Newton–Schulz (Keller Jordan, 2024, blog post).

For hidden weight matrices (ndim ≥ 2; conv kernels viewed as (out, in·kh·kw)), as Keller's
`SingleDeviceMuonWithAuxAdam`:

    b ← β b + (1 − β) g                                  (b_0 = 0)
    u = (1 − β) g + β b   (Nesterov, default)   or   u = b
    O = NS5(u) · sqrt(max(1, rows / cols))
    θ ← θ (1 − η λ) ;  θ ← θ − η O

NS5: X = u / (‖u‖_F + 1e-7) (transposed when rows > cols), then 5 times A = X Xᵀ,
X ← a X + (b A + c A²) X with (a, b, c) = (3.4445, −4.7750, 2.0315): every singular value σ of u
becomes p⁵(σ/‖u‖_F), p(x) = a x + b x³ + c x⁵ — roughly in [0.5, 1.2], not exactly 1, by design.
Keller runs NS in bfloat16; here it runs in the parameter's dtype unless `ns_dtype` says
otherwise, so a float64 reference can be matched exactly. The shape factor follows Keller's code:
rows/cols are the last two dimensions of the parameter (kh/kw for a 4-D conv kernel, i.e. 1 for
square kernels); `adjust_lr="match_rms_adamw"` uses Moonlight's 0.2·sqrt(max(rows, cols)) of the
2-D view instead ("Muon is Scalable for LLM Training").

Every other parameter — ndim < 2, the final (classifier) layer, names matching `adamw_for` —
gets Keller's auxiliary AdamW: m, v as EMAs, θ ← θ(1 − η_a λ) − η_a m̂/(sqrt(v̂) + ε) with its own
lr η_a = adamw_lr (times the group's lr multiplier), betas and eps. Each incoming group is split
into a Muon group and an AdamW group (`use_muon`), so lr schedules scale both alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Annotated, Any, Literal

import torch
from pydantic import Field

from trainlib.optim.base import OptimizerSettings, ParamGroups, RegimenOptimizer, use_foreach
from trainlib.registries import OPTIMIZERS

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
Beta = Annotated[float, Field(ge=0, lt=1)]
NsDtype = Literal["param", "float32", "bfloat16"]
AdjustLr = Literal["original", "match_rms_adamw"]
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class MuonSettings(OptimizerSettings):
    """Muon: orthogonalised Nesterov momentum for hidden matrices, AdamW for the rest."""

    lr: float = Field(0.02, gt=0, le=10, description="Muon's lr (spectral-norm units per step)")
    momentum: float = Field(0.95, ge=0, lt=1)
    nesterov: bool = True
    ns_steps: int = Field(5, ge=1, le=100, description="Newton–Schulz iterations")
    ns_dtype: NsDtype = Field("param", description="dtype of the Newton–Schulz iteration")
    adjust_lr: AdjustLr = Field(
        "original",
        description="shape factor: 'original' sqrt(max(1, rows/cols)) (Keller), "
        "'match_rms_adamw' 0.2·sqrt(max(rows, cols)) (Moonlight)",
    )
    adamw_lr: float = Field(3e-4, gt=0, le=10, description="lr of the auxiliary AdamW")
    adamw_betas: tuple[Beta, Beta] = Field((0.9, 0.95), description="auxiliary AdamW's betas")
    adamw_eps: float = Field(1e-10, gt=0, le=1, description="auxiliary AdamW's epsilon")
    adamw_for: list[str] = Field(
        default_factory=lambda: ["*embed*"],
        description="fnmatch patterns on parameter names that use AdamW (besides ndim < 2 "
        "and the final layer)",
    )


def newton_schulz5(
    g: torch.Tensor, steps: int = 5, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Keller's quintic Newton–Schulz orthogonalisation of a 2-D tensor (in `dtype`)."""
    a, b, c = NS_COEFFICIENTS
    x = g.to(dtype or g.dtype)
    transposed = x.size(-2) > x.size(-1)
    if transposed:
        x = x.mT
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + 1e-7)
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    out: torch.Tensor = x.mT if transposed else x
    return out


def _shape_factor(shape: torch.Size, adjust_lr: str) -> float:
    if adjust_lr == "match_rms_adamw":
        rows, cols = shape[0], math.prod(shape[1:])
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(max(1.0, shape[-2] / shape[-1]))  # Keller: the last two dims


def _split_group(
    group: dict[str, Any], adamw_lr: float, adamw_for: Sequence[str]
) -> list[dict[str, Any]]:
    """A Muon group and an AdamW group from one incoming group (an empty one is dropped)."""
    ps = list(group["params"])
    names = list(group.get("names") or [""] * len(ps))
    muon: tuple[list[Any], list[str]] = ([], [])
    adam: tuple[list[Any], list[str]] = ([], [])
    for name, p in zip(names, ps, strict=True):
        use_adam = (
            p.ndim < 2
            or bool(group.get("final_layer", False))
            or any(fnmatchcase(name, pattern) for pattern in adamw_for)
        )
        target = adam if use_adam else muon
        target[0].append(p)
        target[1].append(name)
    out: list[dict[str, Any]] = []
    if muon[0] or not adam[0]:
        out.append({**group, "params": muon[0], "names": muon[1], "use_muon": True})
    if adam[0]:
        lr = group.get("adamw_lr", adamw_lr * float(group.get("lr_scale", 1.0)))
        out.append({**group, "params": adam[0], "names": adam[1], "use_muon": False, "lr": lr})
    return out


class Muon(RegimenOptimizer):
    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        weight_decay: float = 0.0,
        adamw_lr: float = 3e-4,
        adamw_betas: tuple[float, float] = (0.9, 0.95),
        adamw_eps: float = 1e-10,
        adamw_for: Sequence[str] = ("*embed*",),
        ns_dtype: NsDtype = "param",
        adjust_lr: AdjustLr = "original",
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_steps": ns_steps,
            "weight_decay": weight_decay,
            "adamw_betas": adamw_betas,
            "adamw_eps": adamw_eps,
            "ns_dtype": ns_dtype,
            "adjust_lr": adjust_lr,
            "foreach": foreach,
        }
        self._adamw_lr = adamw_lr
        self._adamw_for = list(adamw_for)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Split the group by who updates each tensor, unless it says (`use_muon`)."""
        if "use_muon" in param_group:
            super().add_param_group(param_group)
            return
        for part in _split_group(param_group, self._adamw_lr, self._adamw_for):
            super().add_param_group(part)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._closure_loss(closure)
        for group, params in self._groups_with_grads():
            foreach = use_foreach(group["foreach"], params)
            if group.get("use_muon", True):
                self._muon(group, params, foreach)
            else:
                self._adamw(group, params, foreach)
        return loss

    def _orthogonalised(self, group: dict[str, Any], u: torch.Tensor) -> torch.Tensor:
        matrix = u.reshape(u.shape[0], -1) if u.ndim > 2 else u
        dtype = _DTYPES.get(group["ns_dtype"], u.dtype)
        out = newton_schulz5(matrix, group["ns_steps"], dtype).to(u.dtype).reshape(u.shape)
        return out.mul_(_shape_factor(u.shape, group["adjust_lr"]))

    def _muon(self, group: dict[str, Any], params: list[torch.Tensor], foreach: bool) -> None:
        beta, lr, wd = group["momentum"], group["lr"], group["weight_decay"]
        for p in params:
            if "momentum_buffer" not in self.state[p]:
                self.state[p]["momentum_buffer"] = torch.zeros_like(p)
        grads = [p.grad for p in params if p.grad is not None]
        bufs = [self.state[p]["momentum_buffer"] for p in params]
        if foreach:
            torch._foreach_lerp_(bufs, grads, 1 - beta)
            us = torch._foreach_lerp(grads, bufs, beta) if group["nesterov"] else bufs
            updates = [self._orthogonalised(group, u) for u in us]
            if wd > 0:
                torch._foreach_mul_(params, 1 - lr * wd)
            torch._foreach_add_(params, updates, alpha=-lr)
            return
        for p, g, buf in zip(params, grads, bufs, strict=True):
            buf.lerp_(g, 1 - beta)
            u = g.lerp(buf, beta) if group["nesterov"] else buf
            update = self._orthogonalised(group, u)
            if wd > 0:
                p.mul_(1 - lr * wd)
            p.add_(update, alpha=-lr)

    def _adamw(self, group: dict[str, Any], params: list[torch.Tensor], foreach: bool) -> None:
        beta1, beta2 = group["adamw_betas"]
        lr, wd, eps = group["lr"], group["weight_decay"], group["adamw_eps"]
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float64)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
        grads = [p.grad for p in params if p.grad is not None]
        ms = [self.state[p]["exp_avg"] for p in params]
        vs = [self.state[p]["exp_avg_sq"] for p in params]
        steps = [self.state[p]["step"].item() for p in params]
        bc1 = [1 - beta1**t for t in steps]
        bc2 = [1 - beta2**t for t in steps]
        if foreach:
            torch._foreach_lerp_(ms, grads, 1 - beta1)
            torch._foreach_lerp_(vs, torch._foreach_mul(grads, grads), 1 - beta2)
            denom = torch._foreach_div(vs, bc2)
            torch._foreach_sqrt_(denom)
            torch._foreach_add_(denom, eps)
            numer = torch._foreach_div(ms, bc1)
            if wd > 0:
                torch._foreach_mul_(params, 1 - lr * wd)
            torch._foreach_addcdiv_(params, numer, denom, value=-lr)
            return
        for p, g, m, v, c1, c2 in zip(params, grads, ms, vs, bc1, bc2, strict=True):
            m.lerp_(g, 1 - beta1)
            v.lerp_(g * g, 1 - beta2)
            denom = (v / c2).sqrt_().add_(eps)
            if wd > 0:
                p.mul_(1 - lr * wd)
            p.addcdiv_(m / c1, denom, value=-lr)


@OPTIMIZERS.register(
    "muon",
    settings=MuonSettings,
    summary="Newton–Schulz-orthogonalised momentum for hidden matrices, AdamW for the rest",
    paper="Muon: An optimizer for hidden layers in neural networks (Keller Jordan, 2024, blog)",
)
def build_muon(s: MuonSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return Muon(groups, **s.optimizer_kwargs())
