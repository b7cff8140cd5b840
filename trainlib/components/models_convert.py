"""Pre-LN -> Pre-RMSNorm conversion of a transformer, exact in exact arithmetic.

Jiang et al., "Pre-RMSNorm and Pre-CRMSNorm Transformers: Equivalent and Efficient Pre-LN
Transformers" (arXiv 2305.14858). LayerNorm(x) = RMSNorm(x - mean(x)); every norm of a Pre-LN
transformer reads the residual stream, so once everything that writes into the stream (token and
position embeddings, each sublayer's output projection) writes zero-mean vectors, every LN can be
an RMSNorm. LN's gain and bias are first folded into the linear layer that reads the norm.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from trainlib.components.models_transformer import CausalSelfAttention, FeedForward, Transformer
from trainlib.components.norms_feature import RMSNorm


def _fold_norm(norm: nn.LayerNorm, linear: nn.Linear) -> None:
    """W' = W diag(gamma), b' = b + W beta: the LN becomes affine-free with the same output."""
    weight = linear.weight
    if norm.bias is not None:
        shift = weight @ norm.bias
        if linear.bias is None:
            linear.bias = nn.Parameter(shift.clone())
        else:
            linear.bias.add_(shift)
    if norm.weight is not None:
        weight.mul_(norm.weight)


def _recentre_rows(table: torch.Tensor) -> None:
    """Each embedding vector minus its mean over the hidden dim."""
    table.sub_(table.mean(dim=-1, keepdim=True))


def _recentre_output(linear: nn.Linear) -> None:
    """A writer (d_out = d) whose every output vector has zero mean over its d coordinates."""
    linear.weight.sub_(linear.weight.mean(dim=0, keepdim=True))
    if linear.bias is not None:
        linear.bias.sub_(linear.bias.mean())


def _as_rmsnorm(norm: nn.LayerNorm) -> RMSNorm:
    # The LN's eps sits inside the square root, as in this RMSNorm: the two agree exactly.
    return RMSNorm(norm.normalized_shape[-1], eps=norm.eps, affine=False)


def convert_pre_ln_to_pre_rmsnorm(model: Transformer) -> Transformer:
    """A copy of a Pre-LN transformer whose norms are affine-free RMSNorms, with equal outputs.

    Tied embeddings are untied: the head takes E diag(gamma) before E is recentred. Fixup's
    scalar biases add a constant vector to the stream and so cannot be converted.
    """
    s = model.settings
    if s.norm_position != "pre" or s.residual == "fixup":
        raise ValueError("only Pre-LN transformers without fixup biases convert exactly")
    converted = copy.deepcopy(model)
    if s.tied_embeddings:
        converted.head.weight = nn.Parameter(converted.head.weight.detach().clone())
    branches = [_branch(block) for block in converted.blocks]
    with torch.no_grad():
        readers = [(_layernorm(converted.final_norm), converted.head)]
        for branch, sublayer in branches:
            readers.append((_layernorm(branch[0]), sublayer.input_layer()))
            _recentre_output(sublayer.output_layer())
        for norm, reader in readers:
            _fold_norm(norm, reader)
        _recentre_rows(converted.stem.weight)
        _recentre_rows(converted.position.weight)
    converted.final_norm = _as_rmsnorm(readers[0][0])
    for (branch, _), (norm, _) in zip(branches, readers[1:], strict=True):
        branch[0] = _as_rmsnorm(norm)
    return converted


def _layernorm(module: nn.Module) -> nn.LayerNorm:
    if not isinstance(module, nn.LayerNorm):
        raise ValueError("every norm must be a LayerNorm (norm: layernorm)")
    return module


def _branch(block: nn.Module) -> tuple[nn.Sequential, CausalSelfAttention | FeedForward]:
    """A Pre-LN block's branch, Sequential(norm, bias, sublayer, dropout, identity)."""
    branch = block.branch
    if not isinstance(branch, nn.Sequential):
        raise TypeError("expected a transformer residual block")
    sublayer = branch[2]
    if not isinstance(sublayer, CausalSelfAttention | FeedForward):
        raise TypeError("expected an attention or feed-forward sublayer")
    return branch, sublayer
