"""`galore`: GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection (Zhao et al.,
2024).

AdamW whose moments live in a rank-r subspace of each weight matrix's gradient. As the authors'
`GaLoreAdamW` + `GaLoreProjector` (jiaweizzhao/GaLore), for a matrix gradient G (m×n):

    k = the tensor's step count before this step (0 on the first)
    if k % update_proj_gap == 0: P ← top-r singular vectors of the current G
        ('std': right ones, P r×n, if m ≥ n, else left ones, P m×r; also 'reverse_std',
        'right', 'left', 'full' = both sides)
    R = G Pᵀ (right) | Pᵀ G (left) | Uᵀ G Vᵀ (full)     (m, v stay when P changes)
    t = k + 1 ;  m ← β1 m + (1 − β1) R ;  v ← β2 v + (1 − β2) R²
    N = m / (sqrt(v) + ε) ;  s = η · sqrt(1 − β2^t) / (1 − β1^t)   (ε on the uncorrected root)
    θ ← θ − s · α · back(N)          back(N) = N P | P N | U N V ;  α = scale
    θ ← θ (1 − η λ)                  (decay AFTER the update, as the authors)

Which tensors are projected: ndim ≥ 2 (conv kernels viewed as (out, in·kh·kw) — the authors use a
Tucker projector for >2-D tensors instead), not the final (classifier) layer and not names
matching `adamw_for`; everything else gets the same AdamW without projection (and without α),
as the authors' script leaves embeddings, the head, norms and biases unprojected.

Deliberate differences from the authors' code, none changing the method: the SVD runs in the
gradient's dtype for float32/float64 (the authors always use float32; half types still go through
float32); each singular vector's sign is fixed (largest-magnitude entry positive) so P — and
hence the run, since m and v carry over a refresh — does not depend on the LAPACK/cuSOLVER sign
convention; the back-projection side is the one used to project (the authors re-derive it from
the low-rank shape, which can fail for 'reverse_std' at full rank); rank is capped at min(m, n).
P is kept in the optimizer state, so a state_dict round trip resumes exactly.

GradNormLoRP (Gradient Weight-normalized Low-rank Projection, 2024) shares GaLore's projector and
its decay-after-update convention; its weight re-parametrisation is not implemented here (its
released code is not usable as a reference — see formulas-optimizers.md §18).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any, Literal

import torch
from pydantic import Field

from trainlib.optim import lowrank
from trainlib.optim.base import OptimizerSettings, ParamGroups, RegimenOptimizer, use_foreach
from trainlib.registries import OPTIMIZERS

Beta = Annotated[float, Field(ge=0, lt=1)]
ProjType = Literal["std", "reverse_std", "right", "left", "full"]


class GaLoreSettings(OptimizerSettings):
    """GaLore AdamW: Adam moments on rank-r SVD projections of weight-matrix gradients."""

    lr: float = Field(0.01, gt=0, le=10)
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="(beta1, beta2), each in [0, 1)")
    eps: float = Field(1e-6, gt=0, le=1, description="added to the uncorrected sqrt(v)")
    correct_bias: bool = True
    rank: int = Field(128, ge=1, le=65536, description="rank r of the projection")
    update_proj_gap: int = Field(200, ge=1, le=10_000_000, description="steps between SVDs")
    scale: float = Field(0.25, gt=0, le=100, description="α, multiplies the projected update")
    proj_type: ProjType = "std"
    adamw_for: list[str] = Field(
        default_factory=lambda: ["*embed*"],
        description="fnmatch patterns on parameter names kept full-rank (besides ndim < 2 "
        "and the final layer)",
    )


class GaLore(RegimenOptimizer):
    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        correct_bias: bool = True,
        rank: int = 128,
        update_proj_gap: int = 200,
        scale: float = 0.25,
        proj_type: ProjType = "std",
        adamw_for: Sequence[str] = ("*embed*",),
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "correct_bias": correct_bias,
            "rank": rank,
            "update_proj_gap": update_proj_gap,
            "scale": scale,
            "proj_type": proj_type,
            "adamw_for": list(adamw_for),
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:
        beta1, beta2 = group["betas"]
        lr = group["lr"]
        params: list[torch.Tensor] = []
        inputs: list[torch.Tensor] = []
        sides: list[lowrank.Side | None] = []
        for name, p in zip(lowrank.param_names(group), group["params"], strict=True):
            if p.grad is None:
                continue
            state = self.state[p]
            if "step" not in state:
                state["step"] = torch.zeros((), dtype=torch.float64)
            side: lowrank.Side | None = None
            x = p.grad
            if lowrank.is_projectable(p, name, group):
                g = lowrank.as_matrix(p.grad)
                side = lowrank.resolve_side(group["proj_type"], g.shape[0], g.shape[1])
                k = int(state["step"].item())
                if "projector" not in state or k % group["update_proj_gap"] == 0:
                    basis = lowrank.svd_basis(g, group["rank"], side)
                    state["projector"] = basis[0]
                    if side == "full":
                        state["projector_right"] = basis[1]
                x = lowrank.project(g, self._basis(state, side), side)
            if "exp_avg" not in state:
                state["exp_avg"] = torch.zeros_like(x)
                state["exp_avg_sq"] = torch.zeros_like(x)
            state["step"] += 1
            params.append(p)
            inputs.append(x)
            sides.append(side)
        if not params:
            return

        foreach = use_foreach(group["foreach"], params)
        moments = [(self.state[p]["exp_avg"], self.state[p]["exp_avg_sq"]) for p in params]
        directions = lowrank.adam_directions(moments, inputs, (beta1, beta2), group["eps"], foreach)
        updates: list[torch.Tensor] = []
        for p, d, side in zip(params, directions, sides, strict=True):
            t = self.state[p]["step"].item()
            size = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t) if group["correct_bias"] else lr
            if side is not None:
                back = lowrank.project_back(d, self._basis(self.state[p], side), side)
                d = back.reshape(p.shape) * group["scale"]
            updates.append(d.mul_(-size))
        decay = 1 - lr * group["weight_decay"]
        if foreach:
            torch._foreach_add_(params, updates)
            if group["weight_decay"] > 0:
                torch._foreach_mul_(params, decay)
        else:
            for p, u in zip(params, updates, strict=True):
                p.add_(u)
                if group["weight_decay"] > 0:
                    p.mul_(decay)

    @staticmethod
    def _basis(state: dict[str, Any], side: lowrank.Side) -> list[torch.Tensor]:
        if side == "full":
            return [state["projector"], state["projector_right"]]
        return [state["projector"]]


@OPTIMIZERS.register(
    "galore",
    settings=GaLoreSettings,
    summary="AdamW with moments in a periodically refreshed low-rank SVD subspace of the gradient",
    paper="GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection "
    "(Zhao, Zhang, Chen, Wang, Anandkumar, Tian, 2024)",
)
def build_galore(s: GaLoreSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return GaLore(groups, **s.optimizer_kwargs())
