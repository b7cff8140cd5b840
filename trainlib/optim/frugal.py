"""`frugal`: FRUGAL: Memory-Efficient Optimization by Reducing State Overhead for Scalable Training.

(Zmushko, Beznosikov, Takáč, Horváth, 2024.) Each weight-matrix gradient G is split into a
state-full part in a low-dimensional subspace, updated by AdamW, and the residual, updated by a
state-free rule (signSGD by default). As the authors' `GaloreAdamW` (philip-zmushko/FRUGAL,
`proj_optimizer_templates.py`, `adamw.py`, `galore_projector.py`), for a projected matrix:

    when the tensor's step count % update_gap == 0 (the first step included):
        side = right if rows ≥ cols else left ('std');  r = round(density · (cols | rows))
        P ← r top singular vectors of the current G ('svd'), a random orthonormal basis
            ('random') or r random coordinates ('randperm') of that side
        if reset_statistics: m, v, step ← 0            (bias correction restarts)
    θ ← θ (1 − η λ)                                     (decoupled decay on every tensor, first)
    R = G Pᵀ (right) | Pᵀ G (left) ;  t ← t + 1
    m ← β1 m + (1 − β1) R ;  v ← β2 v + (1 − β2) R²
    Δ = −η s_p (m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + ε)   (ε on the corrected root)
    θ ← θ + lift(Δ) − η s_p s_i · sign(G − lift(R))    (lift(X) = X P | P X; 'sgd' uses the
                                                         residual itself, 'no' drops it)

with s_p = proj_params_lr_scale and s_i = inactive_lr_scale. Projected: ndim ≥ 2 (conv kernels
viewed as (out, in·kh·kw); the authors only project nn.Linear weights of attention/MLP blocks),
not the final layer (the authors' default leaves the head unprojected), no `adamw_for` name.
All other tensors get the same AdamW without projection, at lr η.

Choices beyond the authors' code: the SVD runs in the gradient's dtype for float32/float64 and
fixes each singular vector's sign (see `galore`); random subspaces come from a generator seeded
by (seed, the tensor's index in the optimizer, its refresh count), drawn on the CPU, so runs are
reproducible and resume exactly (the authors use the global RNG); when the subspace holds all of
G (SVD with r ≥ min(rows, cols), or any basis of the whole side) the residual is taken as exactly
0 — the authors' code would take the sign of its rounding noise, a full-size spurious step; the
refresh is decided per tensor (the authors decide per group from its first tensor: the same when
every tensor gets a gradient every step). Not implemented: the BlockAdamW variant (whole tensors
state-full in turn) and CoordAdamW's coordinate choices other than 'randperm'.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any, Literal

import torch
from pydantic import Field

from trainlib.optim import lowrank
from trainlib.optim.base import OptimizerSettings, ParamGroups, RegimenOptimizer, use_foreach
from trainlib.registries import OPTIMIZERS

Beta = Annotated[float, Field(ge=0, lt=1)]
ProjSide = Literal["std", "reverse_std", "right", "left"]
ProjType = Literal["svd", "random", "randperm"]
InactiveRule = Literal["sign_sgd", "sgd", "no"]


class FrugalSettings(OptimizerSettings):
    """FRUGAL: AdamW in a low-dimensional subspace of each matrix, signSGD on the rest."""

    lr: float = Field(1e-3, gt=0, le=10)
    weight_decay: float = Field(0.01, ge=0, le=10)
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="(beta1, beta2), each in [0, 1)")
    eps: float = Field(1e-8, gt=0, le=1, description="added to the bias-corrected sqrt(v)")
    correct_bias: bool = True
    density: float = Field(
        0.25, ge=0, le=1, description="fraction of the projected side that is state-full"
    )
    update_gap: int = Field(
        200, ge=1, le=10_000_000, description="steps between subspace refreshes"
    )
    reset_statistics: bool = Field(True, description="zero m, v and the step count at refreshes")
    inactive_update_rule: InactiveRule = Field(
        "sign_sgd", description="rule for the residual: sign_sgd, sgd or no (GaLore)"
    )
    inactive_lr_scale: float = Field(1.0, ge=0, le=100, description="lr factor of the residual")
    proj_params_lr_scale: float = Field(
        1.0, ge=0, le=100, description="lr factor of projected tensors (both parts)"
    )
    proj_side: ProjSide = "std"
    proj_type: ProjType = "svd"
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seed of random subspaces")
    adamw_for: list[str] = Field(
        default_factory=lambda: ["*embed*"],
        description="fnmatch patterns on parameter names never projected (besides ndim < 2 "
        "and the final layer)",
    )


def _random_basis(
    g: torch.Tensor, rank: int, side: lowrank.Side, proj_type: str, generator: torch.Generator
) -> torch.Tensor:
    dim = g.shape[1] if side == "right" else g.shape[0]
    if proj_type == "randperm":
        columns = torch.eye(dim, dtype=torch.float64)[:, torch.randperm(dim, generator=generator)]
        basis = columns[:, :rank]  # dim×r: r distinct coordinate vectors
    else:  # 'random': orthonormal columns from the QR of a Gaussian matrix (as nn.init.orthogonal_)
        gauss = torch.randn(dim, rank, generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(gauss)
        signs = torch.sign(torch.diagonal(r))
        basis = q * torch.where(signs == 0, torch.ones_like(signs), signs)
    basis = basis.to(device=g.device, dtype=g.dtype)
    return basis.mT.contiguous() if side == "right" else basis


class Frugal(RegimenOptimizer):
    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        correct_bias: bool = True,
        density: float = 0.25,
        update_gap: int = 200,
        reset_statistics: bool = True,
        inactive_update_rule: InactiveRule = "sign_sgd",
        inactive_lr_scale: float = 1.0,
        proj_params_lr_scale: float = 1.0,
        proj_side: ProjSide = "std",
        proj_type: ProjType = "svd",
        seed: int = 0,
        adamw_for: Sequence[str] = ("*embed*",),
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "correct_bias": correct_bias,
            "density": density,
            "update_gap": update_gap,
            "reset_statistics": reset_statistics,
            "inactive_update_rule": inactive_update_rule,
            "inactive_lr_scale": inactive_lr_scale,
            "proj_params_lr_scale": proj_params_lr_scale,
            "proj_side": proj_side,
            "proj_type": proj_type,
            "seed": seed,
            "adamw_for": list(adamw_for),
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._closure_loss(closure)
        index = 0
        for group in self.param_groups:
            self._step_group(group, index)
            index += len(group["params"])
        return loss

    def _refresh(self, p: torch.Tensor, g: torch.Tensor, group: dict[str, Any], index: int) -> None:
        state = self.state[p]
        side = lowrank.resolve_side(group["proj_side"], g.shape[0], g.shape[1])
        rank = round(group["density"] * (g.shape[1] if side == "right" else g.shape[0]))
        refreshes = int(state["refreshes"].item()) if "refreshes" in state else 0
        if group["proj_type"] == "svd":
            basis = lowrank.svd_basis(g, rank, side)[0]
        else:
            seed = hash((group["seed"], index, refreshes)) & 0x7FFF_FFFF_FFFF_FFFF
            generator = torch.Generator().manual_seed(seed)
            basis = _random_basis(g, rank, side, group["proj_type"], generator)
        state["projector"] = basis
        state["refreshes"] = torch.tensor(refreshes + 1, dtype=torch.int64)
        if "step" not in state or group["reset_statistics"]:
            low = lowrank.project(g, [basis], side)
            state["step"] = torch.zeros((), dtype=torch.float64)
            state["exp_avg"] = torch.zeros_like(low)
            state["exp_avg_sq"] = torch.zeros_like(low)

    def _step_group(self, group: dict[str, Any], first_index: int) -> None:
        lr = group["lr"]
        beta1, beta2 = group["betas"]
        params: list[torch.Tensor] = []
        inputs: list[torch.Tensor] = []
        sides: list[lowrank.Side | None] = []
        for i, (name, p) in enumerate(
            zip(lowrank.param_names(group), group["params"], strict=True)
        ):
            if p.grad is None:
                continue
            state = self.state[p]
            side: lowrank.Side | None = None
            x = p.grad
            if lowrank.is_projectable(p, name, group):
                g = lowrank.as_matrix(p.grad)
                if "step" not in state or int(state["step"].item()) % group["update_gap"] == 0:
                    self._refresh(p, g, group, first_index + i)
                side = lowrank.resolve_side(group["proj_side"], g.shape[0], g.shape[1])
                x = lowrank.project(g, [state["projector"]], side)
            elif "step" not in state:
                state["step"] = torch.zeros((), dtype=torch.float64)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            params.append(p)
            inputs.append(x)
            sides.append(side)
        if not params:
            return

        foreach = use_foreach(group["foreach"], params)
        if group["weight_decay"] > 0:  # decay first, on every tensor (the authors' order)
            decay = 1 - lr * group["weight_decay"]
            if foreach:
                torch._foreach_mul_(params, decay)
            else:
                for p in params:
                    p.mul_(decay)
        # ε on the bias-corrected root: scale m and v's root before adding ε.
        moments = [(self.state[p]["exp_avg"], self.state[p]["exp_avg_sq"]) for p in params]
        steps = [self.state[p]["step"].item() for p in params]
        if group["correct_bias"]:
            directions = self._corrected(moments, inputs, steps, group, foreach)
        else:
            directions = lowrank.adam_directions(
                moments, inputs, (beta1, beta2), group["eps"], foreach
            )
        updates: list[torch.Tensor] = []
        for p, x, d, side in zip(params, inputs, directions, sides, strict=True):
            if side is None:
                updates.append(d.mul_(-lr))
                continue
            active_lr = lr * group["proj_params_lr_scale"]
            basis = [self.state[p]["projector"]]
            update = lowrank.project_back(d, basis, side).mul_(-active_lr)
            rule = group["inactive_update_rule"]
            shape = lowrank.as_matrix(p).shape
            if rule != "no" and not self._captures_all(shape, side, basis[0], group["proj_type"]):
                lifted = lowrank.project_back(x, basis, side)
                residual = lowrank.as_matrix(p.grad) - lifted  # type: ignore[arg-type]
                step = residual.sign() if rule == "sign_sgd" else residual
                update.add_(step, alpha=-active_lr * group["inactive_lr_scale"])
            updates.append(update.reshape(p.shape))
        if foreach:
            torch._foreach_add_(params, updates)
        else:
            for p, u in zip(params, updates, strict=True):
                p.add_(u)

    @staticmethod
    def _captures_all(
        shape: torch.Size, side: lowrank.Side, basis: torch.Tensor, proj_type: str
    ) -> bool:
        """Whether the subspace holds all of G (then the residual is 0, not rounding noise).

        G's rows (columns) lie in the span of its top min(rows, cols) right (left) singular
        vectors; any basis of the whole side holds everything too.
        """
        count, side_dim = (
            (basis.shape[0], shape[1]) if side == "right" else (basis.shape[1], shape[0])
        )
        return count >= side_dim or (proj_type == "svd" and count >= min(shape))

    @staticmethod
    def _corrected(
        moments: list[tuple[torch.Tensor, torch.Tensor]],
        inputs: list[torch.Tensor],
        steps: list[float],
        group: dict[str, Any],
        foreach: bool,
    ) -> list[torch.Tensor]:
        """m̂ / (sqrt(v̂) + ε) with m, v updated in place."""
        beta1, beta2 = group["betas"]
        bc1 = [1 - beta1**t for t in steps]
        root_bc2 = [(1 - beta2**t) ** 0.5 for t in steps]
        ms, vs = lowrank.update_moments(moments, inputs, (beta1, beta2), foreach)
        if foreach:
            denom = torch._foreach_sqrt(vs)
            torch._foreach_div_(denom, root_bc2)
            torch._foreach_add_(denom, group["eps"])
            out = torch._foreach_div(ms, denom)
            torch._foreach_div_(out, bc1)
            return list(out)
        return [
            (m / v.sqrt().div_(c2).add_(group["eps"])).div_(c1)
            for m, v, c1, c2 in zip(ms, vs, bc1, root_bc2, strict=True)
        ]


@OPTIMIZERS.register(
    "frugal",
    settings=FrugalSettings,
    summary="AdamW on a low-dimensional subspace of each matrix, signSGD on the residual",
    paper="FRUGAL: Memory-Efficient Optimization by Reducing State Overhead for Scalable "
    "Training (Zmushko, Beznosikov, Takáč, Horváth, 2024)",
)
def build_frugal(s: FrugalSettings, groups: ParamGroups) -> torch.optim.Optimizer:
    return Frugal(groups, **s.optimizer_kwargs())
