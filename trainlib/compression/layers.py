"""Which layers compression touches: weight matrices of Linear and Conv layers, minus the head."""

from __future__ import annotations

from torch import nn

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def head_of(model: nn.Module) -> nn.Module | None:
    """The classifier: a `head` attribute if the model names one, else its last Linear layer."""
    named = getattr(model, "head", None)
    if isinstance(named, nn.Linear):
        return named
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def compressible(
    model: nn.Module, *, include_head: bool, kinds: tuple[type[nn.Module], ...] = _WEIGHTED
) -> list[tuple[str, nn.Module]]:
    """Named layers of `kinds`, in module order; attention blocks own their projections and
    read the weights directly, so their inner layers are left alone."""
    head = None if include_head else head_of(model)
    skipped: set[str] = set()
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            skipped.add(name + ".")
            continue
        if any(name.startswith(prefix) for prefix in skipped):
            continue
        if isinstance(module, kinds) and module is not head:
            found.append((name, module))
    return found
